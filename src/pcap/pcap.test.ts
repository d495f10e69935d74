import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import { tempDir } from '../../test/support/temp.js';
import { loadPayloads, loadSequences } from '../../test/support/vendor-fixtures.js';
import { CaptureParser, parseCapture, streamUdpDatagrams, type UdpDatagram, writeUdpPcap } from './pcap.js';

const scratch = tempDir();
afterAll(() => scratch.remove());

const payloads = loadSequences()
  .slice(0, 6)
  .flatMap((s) => loadPayloads(s));
const datagrams: UdpDatagram[] = payloads.map((payload, i) => ({
  timeMs: 1_700_000_000_000 + i * 1000 + 7,
  srcAddress: `198.51.100.${i + 1}`,
  dstAddress: '192.0.2.1',
  srcPort: 40000 + i,
  dstPort: 2055,
  payload,
}));
const pcap = writeUdpPcap(datagrams);

/** The same frames as a pcapng: section header, one Ethernet interface (µs), enhanced packet blocks. */
function toPcapng(classic: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  const block = (type: number, body: Uint8Array) => {
    const length = 12 + ((body.byteLength + 3) & ~3);
    const b = new Uint8Array(length);
    const v = new DataView(b.buffer);
    v.setUint32(0, type, true);
    v.setUint32(4, length, true);
    b.set(body, 8);
    v.setUint32(length - 4, length, true);
    parts.push(b);
  };
  const shb = new Uint8Array(16);
  new DataView(shb.buffer).setUint32(0, 0x1a2b3c4d, true);
  new DataView(shb.buffer).setUint16(4, 1, true);
  new DataView(shb.buffer).setBigInt64(8, -1n, true);
  block(0x0a0d0d0a, shb);
  const idb = new Uint8Array(8);
  new DataView(idb.buffer).setUint16(0, 1, true);
  new DataView(idb.buffer).setUint32(4, 262144, true);
  block(1, idb);
  const v = new DataView(classic.buffer, classic.byteOffset, classic.byteLength);
  for (let p = 24; p < classic.byteLength; ) {
    const micros = v.getUint32(p, true) * 1e6 + v.getUint32(p + 4, true);
    const captured = v.getUint32(p + 8, true);
    const body = new Uint8Array(20 + captured);
    const b = new DataView(body.buffer);
    b.setUint32(4, Math.floor(micros / 2 ** 32), true);
    b.setUint32(8, micros % 2 ** 32, true);
    b.setUint32(12, captured, true);
    b.setUint32(16, captured, true);
    body.set(classic.subarray(p + 16, p + 16 + captured), 20);
    block(6, body);
    p += 16 + captured;
  }
  const out = new Uint8Array(parts.reduce((s, x) => s + x.byteLength, 0));
  let o = 0;
  for (const x of parts) {
    out.set(x, o);
    o += x.byteLength;
  }
  return out;
}
const pcapng = toPcapng(pcap);

const plain = (d: UdpDatagram) => ({ ...d, payload: Array.from(d.payload) });

describe('capture reading', () => {
  test('pcap and pcapng give back the datagrams written', () => {
    expect(parseCapture(pcap).map(plain)).toEqual(datagrams.map(plain));
    expect(parseCapture(pcapng).map(plain)).toEqual(datagrams.map(plain));
  });

  test('fed in pieces of any size, the parser emits what it emits on the whole file', () => {
    for (const [name, bytes] of [
      ['pcap', pcap],
      ['pcapng', pcapng],
    ] as const) {
      const whole = parseCapture(bytes).map(plain);
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 1, max: 4000 }), { minLength: 1, maxLength: 40 }), (sizes) => {
          const parser = new CaptureParser(name);
          const got: UdpDatagram[] = [];
          let o = 0;
          for (let i = 0; o < bytes.byteLength; i++) {
            const n = sizes[i % sizes.length]!;
            // A reused buffer, as the file reader does: the parser must copy what it keeps.
            const piece = new Uint8Array(n);
            piece.set(bytes.subarray(o, o + n));
            parser.feed(piece.subarray(0, Math.min(n, bytes.byteLength - o)), (d) =>
              got.push({ ...d, payload: d.payload.slice() }),
            );
            piece.fill(0xee);
            o += n;
          }
          parser.end();
          expect(got.map(plain)).toEqual(whole);
        }),
        { numRuns: 60 },
      );
    }
  });

  test('streaming a file in small chunks returns the same datagrams, with progress', async () => {
    const path = join(scratch.path, 'c.pcapng');
    writeFileSync(path, pcapng);
    const seen: number[] = [];
    const got: UdpDatagram[] = [];
    for await (const d of streamUdpDatagrams(path, { chunkBytes: 977, onProgress: (r) => seen.push(r) })) {
      got.push(d);
    }
    expect(got.map(plain)).toEqual(datagrams.map(plain));
    expect(seen.at(-1)).toBe(pcapng.byteLength);
    expect(seen).toHaveLength(Math.ceil(pcapng.byteLength / 977));
  });

  test('a corrupt record length or a cut block is an error naming the offset, not a huge allocation', () => {
    const corrupt = pcap.slice();
    new DataView(corrupt.buffer).setUint32(24 + 8, 0xffff_fff0, true);
    expect(() => parseCapture(corrupt, 'bad.pcap')).toThrow(
      /bad\.pcap: a record of 4294967280 bytes at byte 24/,
    );
    expect(() => parseCapture(pcapng.subarray(0, pcapng.byteLength - 10), 'cut.pcapng')).toThrow(
      /cut\.pcapng: truncated pcapng block at byte \d+/,
    );
    expect(() => parseCapture(new Uint8Array(10), 'tiny')).toThrow(/tiny: too short to be a capture/);
    expect(() => parseCapture(new Uint8Array(64), 'zeros')).toThrow(/zeros: not a pcap or pcapng file/);
  });
});
