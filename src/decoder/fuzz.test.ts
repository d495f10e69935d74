import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { xorshift32 } from '../../test/support/prng.js';
import { loadPayloads, loadSequences } from '../../test/support/vendor-fixtures.js';
import { type ExportField, ExportPacketBuilder, encodeRecord } from '../export/packet-builder.js';
import { CollectingSink } from './collecting-sink.js';
import {
  DECODE_ERRORS,
  Decoder,
  type DecoderCounters,
  type DecoderOptions,
  type FlowSink,
} from './decoder.js';

/**
 * Fuzzing the decoder: fast-check properties over generated packets, and a mutation fuzzer over the
 * vendor captures (test/fixtures/vendor). For every case: no exception escapes decode(), the packet is
 * counted, a packet that yields nothing is counted as malformed (or is a well-formed packet with
 * nothing in it), no single packet takes long, and the decoder's state stays within its configured
 * bounds. Time-boxed: FUZZ_SECONDS (default 8 per fuzzer) and FUZZ_SEED to repeat a run; each prints
 * the number of cases it ran.
 */
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 8);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const T0 = Date.UTC(2026, 10, 23, 10, 0, 0);
/** FUZZ_DEBUG=1 prints the counters and template of each packet that went uncounted. */
const DEBUG = process.env.FUZZ_DEBUG === '1';

/** Small bounds, so that the fuzzers reach them. */
const BOUNDS: Partial<DecoderOptions> = {
  maxExporters: 64,
  maxStreams: 256,
  maxTemplatesPerStream: 64,
  maxTemplates: 2_000,
  layoutCacheSize: 128,
  pendingMaxBytes: 256 * 1024,
  pendingStreamMaxBytes: 64 * 1024,
};

/** Counts rows instead of keeping them: the fuzzers decode millions. */
class CountingSink implements FlowSink {
  rows = 0;
  push(): void {
    this.rows++;
  }
}

const sumErrors = (c: DecoderCounters) => DECODE_ERRORS.reduce((s, k) => s + c[k], 0);
/** What a packet can yield other than an error: records, template changes, held data, odd tails. */
const yielded = (c: DecoderCounters) =>
  c.trailing_bytes +
  c.records +
  c.option_records +
  c.templates_added +
  c.templates_refreshed +
  c.templates_replaced +
  c.templates_withdrawn +
  c.template_limit +
  c.stream_limit +
  c.exporter_limit +
  c.sets_missing_template +
  c.packet_section_unreadable +
  c.packet_section_not_ip +
  c.exporter_not_allowed;

/** A well-formed packet with nothing in it: a header and, at most, sets without records. */
function emptyByDesign(p: Uint8Array): boolean {
  if (p.byteLength < 4) return false;
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const version = v.getUint16(0);
  if (version === 5) return v.getUint16(2) === 0 && p.byteLength >= 24;
  if (version === 9 || version === 10) {
    let o = version === 9 ? 20 : 16;
    const end = version === 10 && p.byteLength >= 4 ? Math.min(p.byteLength, v.getUint16(2)) : p.byteLength;
    if (end < o) return false;
    // Every set holds only padding: less than a template header (6 bytes for options templates), or
    // less than 4 bytes of data; a zero set header with zeros after it is padding too.
    const optionsSet = version === 9 ? 1 : 3;
    while (end - o >= 4) {
      const id = v.getUint16(o);
      const length = v.getUint16(o + 2);
      if (id === 0 && length === 0) return p.subarray(o, end).every((b) => b === 0);
      if (version === 10 && (id === 2 || id === 3) && length >= 4 && o + length <= end) {
        // Withdrawals only (RFC 7011 §8.1: ID, field count 0), of templates this decoder may not hold.
        let r = o + 4;
        while (o + length - r >= 4 && v.getUint16(r + 2) === 0) r += 4;
        if (o + length - r < 4) {
          o += length;
          continue;
        }
      }
      if (length < 4 || o + length > end || length - 4 >= (id === optionsSet ? 6 : 4)) return false;
      o += length;
    }
    return end - o < 4;
  }
  return false;
}

interface Outcome {
  cases: number;
  unaccounted: Uint8Array[];
  slowestMs: number;
}

function check(decoder: Decoder, options: Partial<DecoderOptions>): void {
  const size = decoder.size;
  const o = { ...options };
  expect(size.exporters).toBeLessThanOrEqual(o.maxExporters!);
  expect(size.streams).toBeLessThanOrEqual(o.maxStreams!);
  expect(size.templates).toBeLessThanOrEqual(o.maxTemplates!);
  expect(size.layouts).toBeLessThanOrEqual(o.layoutCacheSize!);
  expect(size.pendingBytes).toBeLessThanOrEqual(o.pendingMaxBytes!);
}

/** Decodes one case; an exception fails the test with the packet in hex. */
function run(decoder: Decoder, exporter: string, packet: Uint8Array, out: Outcome): void {
  const c = decoder.counters;
  const packets = c.packets;
  const errors = sumErrors(c);
  const before = yielded(c);
  const snapshot = DEBUG ? { ...c } : c;
  const started = performance.now();
  try {
    decoder.decode(decoder.exporter(exporter), packet, T0 + out.cases);
  } catch (error) {
    throw new Error(`decode threw ${String(error)} on ${Buffer.from(packet).toString('hex')}`);
  }
  const took = performance.now() - started;
  if (DEBUG && took > 50)
    console.log(
      'slow',
      took.toFixed(1),
      packet.byteLength,
      JSON.stringify(decoder.size),
      Buffer.from(packet.subarray(0, 32)).toString('hex'),
    );
  out.slowestMs = Math.max(out.slowestMs, took);
  out.cases++;
  expect(c.packets).toBe(packets + 1);
  if (sumErrors(c) === errors && yielded(c) === before && !emptyByDesign(packet)) {
    if (out.unaccounted.length < 5) out.unaccounted.push(packet.slice());
    if (DEBUG && out.unaccounted.length <= 5) {
      const moved = Object.entries(c)
        .filter(([k, v]) => v !== snapshot[k as keyof DecoderCounters])
        .map(([k, v]) => [k, v - snapshot[k as keyof DecoderCounters]]);
      const v = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
      const setAt = v.getUint16(0) === 9 ? 20 : 16;
      const setId = packet.byteLength >= setAt + 4 ? v.getUint16(setAt) : -1;
      const t = decoder
        .templates()
        .filter((x) => x.address === exporter && x.id === setId)
        .map((x) => ({
          d: x.domain,
          n: x.fields.length,
          len: x.fields.reduce((s, f) => s + f.length, 0),
          kind: x.kind,
        }));
      console.log(
        'unaccounted',
        packet.byteLength,
        JSON.stringify(moved),
        'set',
        setId,
        v.getUint16(setAt + 2),
        JSON.stringify(t),
        Buffer.from(packet.subarray(0, 24)).toString('hex'),
      );
    }
  }
}

const prng = xorshift32;

const INTERESTING_16 = [0, 1, 2, 3, 4, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xfffe, 0xffff];

/** One mutation of a vendor packet: bit flips, interesting values in 8/16/32-bit fields, cuts, splices. */
function mutate(input: Uint8Array, next: () => number, corpus: Uint8Array[]): Uint8Array {
  let p = input.slice();
  const n = 1 + (next() % 4);
  for (let i = 0; i < n; i++) {
    const at = p.byteLength > 0 ? next() % p.byteLength : 0;
    switch (next() % 8) {
      case 0:
        if (p.byteLength > 0) p[at] = p[at]! ^ (1 << (next() % 8));
        break;
      case 1:
        if (p.byteLength > 0) p[at] = [0, 1, 0x7f, 0x80, 0xff][next() % 5]!;
        break;
      case 2:
      case 3: {
        // Lengths, counts, IDs and field specifiers are 16-bit: the likeliest to break a parser.
        if (p.byteLength < 2) break;
        const v = INTERESTING_16[next() % INTERESTING_16.length]!;
        const o = (at & ~1) % (p.byteLength - 1);
        p[o] = v >> 8;
        p[o + 1] = v & 0xff;
        break;
      }
      case 4:
        if (p.byteLength >= 4) {
          const o = at % (p.byteLength - 3);
          new DataView(p.buffer).setUint32(o, [0, 0xffffffff, 0x80000000, next()][next() % 4]!);
        }
        break;
      case 5:
        p = p.subarray(0, at).slice();
        break;
      case 6: {
        // Splice a piece of another vendor packet in.
        const other = corpus[next() % corpus.length]!;
        const from = next() % Math.max(1, other.byteLength);
        const piece = other.subarray(from, from + 1 + (next() % 64));
        const q = new Uint8Array(p.byteLength + piece.byteLength);
        q.set(p.subarray(0, at));
        q.set(piece, at);
        q.set(p.subarray(at), at + piece.byteLength);
        p = q;
        break;
      }
      default: {
        // Repeat a piece (sets and records twice, lengths now wrong).
        const len = 1 + (next() % 32);
        const piece = p.subarray(at, at + len);
        const q = new Uint8Array(p.byteLength + piece.byteLength);
        q.set(p.subarray(0, at + piece.byteLength));
        q.set(piece, at + piece.byteLength);
        q.set(p.subarray(at + piece.byteLength), at + 2 * piece.byteLength);
        p = q;
      }
    }
  }
  return p;
}

const sequences = loadSequences();
const corpus = sequences.map((s) => loadPayloads(s));
const flat = corpus.flat();

describe('decoder fuzzing', () => {
  test.each([{ compile: true }, { compile: false }])(
    'mutation fuzzer over the vendor captures (%o)',
    ({ compile }) => {
      const options = { ...BOUNDS, compile };
      const sink = new CountingSink();
      const decoder = new Decoder(sink, options);
      const next = prng(SEED + (compile ? 0 : 1));
      const out: Outcome = { cases: 0, unaccounted: [], slowestMs: 0 };
      const deadline = performance.now() + SECONDS * 1000;
      let round = 0;
      while (performance.now() < deadline) {
        const index = next() % corpus.length;
        const payloads = corpus[index]!;
        // Exporters rotate (past maxExporters, so eviction runs too); the sequence is replayed whole
        // first, so data sets meet their templates and mutations reach the record decoders.
        const exporter = `10.${(round >> 8) & 255}.${round & 255}.1`;
        if (round % 4 === 0) for (const p of payloads) run(decoder, exporter, p, out);
        for (let k = 0; k < 50; k++) {
          run(decoder, exporter, mutate(payloads[next() % payloads.length]!, next, flat), out);
        }
        if (round % 16 === 0) {
          decoder.expire(T0 + out.cases + 3_600_000 * 2);
          check(decoder, options);
        }
        round++;
      }
      check(decoder, options);
      const c = decoder.counters;
      console.log(
        `mutation fuzzer (compile ${compile}, seed ${SEED}): ${out.cases} cases in ${SECONDS} s, ` +
          `${sumErrors(c)} counted malformed, ${c.records} records, slowest ${out.slowestMs.toFixed(1)} ms, ` +
          `state ${JSON.stringify(decoder.size)}, heap ${(process.memoryUsage().heapUsed / 1048576).toFixed(0)} MiB`,
      );
      expect(out.cases).toBeGreaterThan(1_000);
      expect(
        out.unaccounted.map((p) => Buffer.from(p).toString('hex')),
        `packets that yielded nothing and were not counted as malformed (FUZZ_SEED=${SEED} FUZZ_DEBUG=1)`,
      ).toEqual([]);
      // Wall time on a shared machine: generous, to catch runaway loops, not preemption.
      expect(out.slowestMs).toBeLessThan(1000);
      expect(sumErrors(c)).toBeGreaterThan(out.cases / 10);
      expect(c.packets).toBe(out.cases);
      // Still decodes a good packet exactly.
      const F = (id: number, length: number): ExportField => ({ id, length });
      const fields = [F(8, 4), F(12, 4), F(7, 2), F(11, 2), F(4, 1), F(1, 4), F(2, 4)];
      const collect = new CollectingSink();
      const fresh = new Decoder(collect, options);
      const good = new ExportPacketBuilder(10, 7)
        .templates([{ id: 300, fields }])
        .data(300, [encodeRecord(fields, ['10.1.2.3', '10.4.5.6', 1000, 53, 17, 4242, 7])])
        .build({ exportSecs: T0 / 1000, sequence: 0 });
      decoder.decode(decoder.exporter('203.0.113.99'), good, T0);
      fresh.decode(fresh.exporter('203.0.113.99'), good, T0);
      expect(collect.flows.map((f) => [f.src_addr, f.dst_addr, f.bytes])).toEqual([
        ['10.1.2.3', '10.4.5.6', 4242],
      ]);
    },
    60_000,
  );

  test('fast-check properties: arbitrary bytes, and headers of each version with arbitrary bodies', () => {
    const options = { ...BOUNDS, compile: true };
    const decoder = new Decoder(new CountingSink(), options);
    const out: Outcome = { cases: 0, unaccounted: [], slowestMs: 0 };
    const header = (version: number) =>
      fc
        .tuple(fc.uint8Array({ minLength: 0, maxLength: 1500 }), fc.integer({ min: 0, max: 0xffff }))
        .map(([body, word]) => {
          const p = new Uint8Array(Math.max(4, body.byteLength));
          p.set(body.subarray(0, p.byteLength));
          p[0] = version >> 8;
          p[1] = version & 0xff;
          p[2] = word >> 8;
          p[3] = word & 0xff;
          return p;
        });
    // Set-structured bodies: a header then sets with plausible IDs and lengths, contents arbitrary.
    const sets = (version: 9 | 10) =>
      fc
        .array(
          fc.record({
            id: fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 255, 256, 300), fc.integer({ min: 0, max: 0xffff })),
            body: fc.uint8Array({ maxLength: 300 }),
            skew: fc.integer({ min: -8, max: 8 }),
          }),
          { maxLength: 6 },
        )
        .map((list) => {
          const headerBytes = version === 9 ? 20 : 16;
          const total = headerBytes + list.reduce((s, x) => s + 4 + x.body.byteLength, 0);
          const p = new Uint8Array(total);
          const v = new DataView(p.buffer);
          v.setUint16(0, version);
          v.setUint16(2, version === 9 ? list.length : total);
          let o = headerBytes;
          for (const x of list) {
            v.setUint16(o, x.id);
            v.setUint16(o + 2, Math.max(0, Math.min(0xffff, 4 + x.body.byteLength + x.skew)));
            p.set(x.body, o + 4);
            o += 4 + x.body.byteLength;
          }
          return p;
        });
    const start = performance.now();
    fc.assert(
      fc.property(
        fc.oneof(fc.uint8Array({ maxLength: 2000 }), header(5), header(9), header(10), sets(9), sets(10)),
        fc.integer({ min: 0, max: 31 }),
        (packet, source) => {
          run(decoder, `192.0.2.${source}`, packet, out);
          return true;
        },
      ),
      { numRuns: 30_000, seed: SEED, interruptAfterTimeLimit: SECONDS * 1000, markInterruptAsFailure: false },
    );
    check(decoder, options);
    console.log(
      `fast-check (seed ${SEED}): ${out.cases} cases in ${((performance.now() - start) / 1000).toFixed(1)} s, ` +
        `${sumErrors(decoder.counters)} counted malformed, slowest ${out.slowestMs.toFixed(1)} ms`,
    );
    expect(out.cases).toBeGreaterThan(1000);
    expect(
      out.unaccounted.map((p) => Buffer.from(p).toString('hex')),
      `uncounted packets (repeat with FUZZ_SEED=${SEED} FUZZ_DEBUG=1)`,
    ).toEqual([]);
    // Wall time on a shared machine: generous, to catch runaway loops, not preemption.
    expect(out.slowestMs).toBeLessThan(1000);
  }, 60_000);
});
