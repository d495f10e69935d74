import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { loadPayloads, loadSequences } from '../../test/support/vendor-fixtures.js';
import { type ExportField, ExportPacketBuilder, encodeRecord } from '../export/packet-builder.js';
import { CollectingSink } from './collecting-sink.js';
import { Decoder, type DecoderOptions } from './decoder.js';

const T0 = Date.UTC(2026, 10, 23, 10, 0, 0);
const SECS = T0 / 1000;
const F = (id: number, length: number, enterprise = 0): ExportField => ({ id, length, enterprise });
const BASIC = [F(8, 4), F(12, 4), F(7, 2), F(11, 2), F(4, 1), F(1, 4), F(2, 4)];
const goodRecord = encodeRecord(BASIC, ['10.1.2.3', '10.4.5.6', 1000, 53, 17, 4242, 7]);

function setup(options: Partial<DecoderOptions> = {}) {
  const sink = new CollectingSink();
  const decoder = new Decoder(sink, options);
  return { sink, decoder, exporter: decoder.exporter('192.0.2.20') };
}

/** A well-formed template + data packet; after bad input it must still decode to exactly this. */
function goodPacket(version: 9 | 10, domain = 4242, templateId = 999): Uint8Array {
  return new ExportPacketBuilder(version, domain)
    .templates([{ id: templateId, fields: BASIC }])
    .data(templateId, [goodRecord])
    .build({ exportSecs: SECS, sequence: 0 });
}

function expectStillWorks(decoder: Decoder, sink: CollectingSink, version: 9 | 10): void {
  const before = sink.flows.length;
  decoder.decode(decoder.exporter('198.51.100.250'), goodPacket(version), T0);
  expect(
    sink.flows.slice(before).map((f) => [f.src_addr, f.dst_addr, f.bytes, f.packets, f.dst_port]),
  ).toEqual([['10.1.2.3', '10.4.5.6', 4242, 7, 53]]);
}

describe('malformed input is counted and dropped; nothing else is lost', () => {
  test('every truncation of every vendor packet', () => {
    const { sink, decoder } = setup();
    let packets = 0;
    for (const [index, sequence] of loadSequences().entries()) {
      const exporter = decoder.exporter(`10.200.${index}.1`);
      for (const payload of loadPayloads(sequence)) {
        for (let cut = 0; cut < payload.length; cut += cut < 64 ? 1 : 7) {
          decoder.decode(exporter, payload.subarray(0, cut), T0);
          packets++;
        }
      }
    }
    expect(decoder.counters.packets).toBe(packets);
    const errors = decoder.streams().reduce((s, x) => s + x.decode_errors, 0);
    expect(errors).toBeGreaterThan(1000);
    expect(decoder.counters.packet_too_short).toBeGreaterThan(0);
    expectStillWorks(decoder, sink, 9);
    expectStillWorks(decoder, sink, 10);
  });

  test('wrong lengths: set longer than the datagram, set shorter than its header, IPFIX length', () => {
    const { sink, decoder, exporter } = setup();
    const packet = goodPacket(10);
    // The data set claims 200 more bytes than the message holds: its complete records are kept.
    const overrun = packet.slice();
    const view = new DataView(overrun.buffer);
    const dataSetAt = 16 + view.getUint16(18);
    view.setUint16(dataSetAt + 2, view.getUint16(dataSetAt + 2) + 200);
    decoder.decode(exporter, overrun, T0);
    expect(decoder.counters.set_overrun).toBe(1);
    expect(sink.flows).toHaveLength(1);
    // A set of length 2.
    const short = packet.slice();
    new DataView(short.buffer).setUint16(18, 2);
    decoder.decode(exporter, short, T0);
    expect(decoder.counters.set_too_short).toBe(1);
    // Message length beyond the datagram, and below the header.
    const longer = packet.slice();
    new DataView(longer.buffer).setUint16(2, packet.length + 1);
    decoder.decode(exporter, longer, T0);
    new DataView(longer.buffer).setUint16(2, 10);
    decoder.decode(exporter, longer, T0);
    expect(decoder.counters.ipfix_bad_length).toBe(2);
    expectStillWorks(decoder, sink, 10);
  });

  test('template ids below 256 are refused; the valid templates beside them are kept', () => {
    const { sink, decoder, exporter } = setup();
    decoder.decode(
      exporter,
      new ExportPacketBuilder(9, 0)
        .templates([
          { id: 5, fields: BASIC },
          { id: 300, fields: BASIC },
        ])
        .data(300, [goodRecord])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    expect(decoder.counters.template_id_reserved).toBe(1);
    expect(sink.flows).toHaveLength(1);
  });

  test('zero-length fields occupy no bytes; a template whose records would be empty is refused', () => {
    const { sink, decoder, exporter } = setup();
    const zero = [...BASIC, F(0, 0), F(1, 0), F(99, 0)];
    decoder.decode(
      exporter,
      new ExportPacketBuilder(10, 0)
        .templates([
          { id: 256, fields: zero },
          { id: 257, fields: [F(1, 0), F(2, 0)] },
        ])
        .data(256, [goodRecord])
        .data(257, [new Uint8Array(0)])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    expect(sink.flows.map((f) => f.bytes)).toEqual([4242]);
    expect(decoder.counters.template_empty_record).toBe(1);
  });

  test('a huge field count is refused before any allocation', () => {
    const { sink, decoder, exporter } = setup();
    const packet = new ExportPacketBuilder(10, 0)
      .raw([0, 2, 0, 12, 1, 0, 0xff, 0xff, 0, 8, 0, 4])
      .build({ exportSecs: SECS, sequence: 0 });
    decoder.decode(exporter, packet, T0);
    const tooMany = new ExportPacketBuilder(10, 0)
      .templates([{ id: 256, fields: Array.from({ length: 600 }, () => F(1, 4)) }])
      .build({ exportSecs: SECS, sequence: 0 });
    decoder.decode(exporter, tooMany, T0);
    expect(decoder.counters.template_malformed).toBe(1);
    expect(decoder.counters.template_too_many_fields).toBe(1);
    expect(decoder.size.templates).toBe(0);
    expectStillWorks(decoder, sink, 10);
  });

  test('a variable-length field pointing past the datagram drops only that record', () => {
    const { sink, decoder, exporter } = setup();
    const fields = [F(8, 4), F(82, 65535), F(1, 4)];
    const good = encodeRecord(fields, ['10.0.0.1', 'eth0', 10]);
    const bad = Uint8Array.from([10, 0, 0, 2, 255, 0xff, 0xf0, 1, 2, 3, 4]);
    decoder.decode(
      exporter,
      new ExportPacketBuilder(10, 0)
        .templates([{ id: 256, fields }])
        .data(256, [good, bad], { pad: false })
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    expect(sink.flows.map((f) => f.src_addr)).toEqual(['10.0.0.1']);
    expect(decoder.counters.record_overrun).toBe(1);
  });

  test('template floods stay within the configured bounds', () => {
    const { sink, decoder } = setup({
      maxTemplatesPerStream: 64,
      maxTemplates: 1_000,
      maxExporters: 50,
      maxStreams: 100,
    });
    const heapBefore = process.memoryUsage().heapUsed;
    for (let e = 0; e < 200; e++) {
      const exporter = decoder.exporter(`10.66.${e >> 8}.${e & 255}`);
      for (let domain = 0; domain < 2; domain++) {
        const builder = new ExportPacketBuilder(10, domain);
        // 100 templates per domain, each with its own layout (a flood of distinct compiled decoders).
        builder.templates(
          Array.from({ length: 100 }, (_, i) => ({
            id: 256 + i,
            fields: [F(1, 4), F(2, 4), F(1000 + i, (i % 7) + 1)],
          })),
        );
        decoder.decode(exporter, builder.build({ exportSecs: SECS, sequence: 0 }), T0 + e);
      }
    }
    const size = decoder.size;
    expect(size.exporters).toBeLessThanOrEqual(50);
    expect(size.streams).toBeLessThanOrEqual(100);
    expect(size.templates).toBeLessThanOrEqual(1_000);
    expect(
      decoder.counters.templates_evicted + decoder.counters.template_limit + decoder.counters.exporter_limit,
    ).toBeGreaterThan(0);
    // Templates are only compiled when data uses them, so a flood of templates compiles nothing (the one
    // compilation is NetFlow v5's built-in layout), and exporters with the same layouts share them.
    expect(decoder.counters.templates_compiled).toBe(1);
    expect(size.compiled).toBe(0);
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024);
    expectStillWorks(decoder, sink, 10);
  });

  test('compiled decoders stay within the layout cache when data arrives for many distinct layouts', () => {
    const { sink, decoder } = setup({ layoutCacheSize: 8 });
    let records = 0;
    for (let i = 0; i < 50; i++) {
      // Each exporter a layout of its own, then data for it: every layout gets compiled once.
      const exporter = decoder.exporter(`10.77.0.${i + 1}`);
      const fields = [...BASIC, F(2000 + i, 2)];
      decoder.decode(
        exporter,
        new ExportPacketBuilder(10, 0)
          .templates([{ id: 300, fields }])
          .data(300, [encodeRecord(fields, ['10.1.2.3', '10.4.5.6', 1, 2, 6, i, 1, 0])])
          .build({ exportSecs: SECS, sequence: 0 }),
        T0,
      );
      records++;
    }
    expect(decoder.size).toMatchObject({ templates: 50, layouts: 8, compiled: 8 });
    // The first exporter's layout was evicted; its next data set compiles it again and is decoded.
    decoder.decode(
      decoder.exporter('10.77.0.1'),
      new ExportPacketBuilder(10, 0)
        .data(300, [encodeRecord([...BASIC, F(2000, 2)], ['10.9.9.9', '10.4.5.6', 1, 2, 6, 77, 1, 0])])
        .build({ exportSecs: SECS, sequence: 1 }),
      T0,
    );
    expect(sink.flows).toHaveLength(records + 1);
    expect(sink.flows.at(-1)).toMatchObject({ src_addr: '10.9.9.9', bytes: 77 });
    expect(decoder.size).toMatchObject({ layouts: 8, compiled: 8 });
    expect(decoder.counters.templates_compiled).toBe(1 + 50 + 1);
  });

  test('random mutations of vendor packets never throw and never disturb later packets', () => {
    const payloads = loadSequences().flatMap((s) => loadPayloads(s));
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: payloads.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 12 }),
        fc.nat(),
        (index, edits, cut) => {
          const { sink, decoder, exporter } = setup();
          const original = payloads[index]!;
          const mutated = original.slice(0, Math.max(4, original.length - (cut % 64)));
          for (const [at, value] of edits) mutated[at % mutated.length] = value;
          decoder.decode(exporter, mutated, T0);
          expectStillWorks(decoder, sink, (index % 2 === 0 ? 9 : 10) as 9 | 10);
        },
      ),
      { numRuns: 400 },
    );
  });

  test('flow times the table cannot hold are replaced by the export time and counted', () => {
    const { sink, decoder, exporter } = setup();
    const fields = [F(8, 4), F(152, 8), F(153, 8)];
    decoder.decode(
      exporter,
      new ExportPacketBuilder(10, 0)
        .templates([{ id: 256, fields }])
        .data(256, [encodeRecord(fields, ['10.0.0.1', 2n ** 63n, 2n ** 50n])])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    expect([sink.flows[0]!.flow_start, sink.flows[0]!.flow_end]).toEqual([T0, T0]);
    expect(decoder.counters.time_out_of_range).toBe(2);
  });

  test('found by the fuzzer: packets that yielded nothing and were not counted', () => {
    const { sink, decoder, exporter } = setup();
    const build = (b: ExportPacketBuilder) => b.build({ exportSecs: SECS, sequence: 0 });
    const errors = () => ({ ...decoder.counters });
    // A data set shorter than one record of its template (28 bytes): not padding, which is shorter
    // than a record but never a whole set without one.
    decoder.decode(exporter, goodPacket(10, 1, 400), T0);
    let before = errors();
    decoder.decode(
      exporter,
      build(new ExportPacketBuilder(10, 1).data(400, [goodRecord.subarray(0, 20)])),
      T0,
    );
    expect(decoder.counters.record_overrun - before.record_overrun).toBe(1);
    // A v9 template record with no fields that is not zero padding.
    before = errors();
    decoder.decode(
      exporter,
      build(new ExportPacketBuilder(9, 1).raw([0, 0, 0, 12, 1, 44, 0, 0, 0, 8, 0, 4])),
      T0,
    );
    expect(decoder.counters.template_malformed - before.template_malformed).toBe(1);
    // Zero padding in a template set, and a zero set header followed by zeros: nothing to count.
    before = errors();
    decoder.decode(
      exporter,
      build(new ExportPacketBuilder(9, 1).raw([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
      T0,
    );
    expect(errors()).toEqual({ ...before, packets: before.packets + 1 });
    // A zero set header followed by other bytes: the records before it kept, the tail counted.
    before = errors();
    decoder.decode(exporter, build(new ExportPacketBuilder(9, 1).raw([0, 0, 0, 0, 9, 9, 9, 9])), T0);
    expect(decoder.counters.trailing_bytes - before.trailing_bytes).toBe(1);
    // An IPFIX withdrawal of a reserved template ID (only 2 and 3 withdraw all, RFC 7011 §8.1).
    before = errors();
    decoder.decode(exporter, build(new ExportPacketBuilder(10, 1).withdraw([7])), T0);
    expect(decoder.counters.template_id_reserved - before.template_id_reserved).toBe(1);
    // An IPFIX options template header cut after its field count (FUZZ_SEED=1298351475).
    before = errors();
    decoder.decode(exporter, build(new ExportPacketBuilder(10, 1).raw([0, 3, 0, 8, 9, 222, 5, 177])), T0);
    expect(decoder.counters.options_template_malformed - before.options_template_malformed).toBe(1);
    // A withdrawal of an ID never seen is not an error.
    before = errors();
    decoder.decode(exporter, build(new ExportPacketBuilder(10, 1).withdraw([999])), T0);
    expect(errors()).toEqual({ ...before, packets: before.packets + 1 });
    expectStillWorks(decoder, sink, 9);
    expectStillWorks(decoder, sink, 10);
  });
});
