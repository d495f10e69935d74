import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { createRingBuffer, ENTRY_HEADER, RingReader, RingWriter } from './packet-ring.js';

const address = Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 192, 0, 2, 1]);

describe('packet ring', () => {
  test('entries come out in order, intact, with their metadata, across many wraps', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 9000 }), { minLength: 1, maxLength: 300 }), (sizes) => {
        const buffer = createRingBuffer(1 << 16);
        const writer = new RingWriter(buffer);
        const reader = new RingReader(buffer);
        const seen: Array<[number, number, number, number]> = [];
        let next = 0;
        const handle = (payload: Uint8Array, addr: Uint8Array, off: number, port: number, ms: number) => {
          expect(addr.subarray(off, off + 16)).toEqual(address);
          seen.push([payload.length, payload[0] ?? -1, port, ms]);
        };
        for (const size of sizes) {
          const payload = new Uint8Array(size).fill(next & 255);
          // Read whenever the ring is full, as the decoder thread would.
          while (!writer.write(payload, address, next & 0xffff, next * 10)) reader.read(handle, 1_000);
          next++;
        }
        reader.read(handle, 1_000_000);
        expect(seen).toEqual(sizes.map((size, i) => [size, size === 0 ? -1 : i & 255, i & 0xffff, i * 10]));
        expect(reader.used).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  test('a full ring refuses the write instead of overwriting unread entries', () => {
    const buffer = createRingBuffer(1 << 16);
    const writer = new RingWriter(buffer);
    const payload = new Uint8Array(1000 - ENTRY_HEADER);
    let accepted = 0;
    while (writer.write(payload, address, 1, 1)) accepted++;
    expect(accepted).toBe(Math.floor(65536 / 1000));
    const reader = new RingReader(buffer);
    expect(reader.read(() => undefined, 1)).toBe(1);
    expect(writer.write(payload, address, 1, 1)).toBe(true);
    expect(writer.write(payload, address, 1, 1)).toBe(false);
  });

  test('a waiting reader wakes when the writer adds an entry', async () => {
    const buffer = createRingBuffer(1 << 16);
    const reader = new RingReader(buffer);
    const writer = new RingWriter(buffer);
    const started = performance.now();
    const waiting = reader.waitForData(10_000);
    setTimeout(() => writer.write(new Uint8Array(10), address, 1, 1), 20);
    await waiting;
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(reader.read(() => undefined, 10)).toBe(1);
  });
});
