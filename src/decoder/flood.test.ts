import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, test } from 'vitest';
import { xorshift32 } from '../../test/support/prng.js';
import { createCidrMatcher } from '../common/ip.js';
import { type ExportField, ExportPacketBuilder, encodeRecord } from '../export/packet-builder.js';
import { CollectingSink } from './collecting-sink.js';
import { Decoder, type DecoderOptions } from './decoder.js';

/**
 * Template floods and spoofed exporters: 10,000 random templates from 1,000 sources against the
 * configured bounds (exporters, templates per stream, templates in all, layouts), with the heap
 * measured after a full GC before and after the flood.
 */
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapAfterGc = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

const T0 = Date.UTC(2026, 10, 23, 10, 0, 0);
const SECS = T0 / 1000;
const F = (id: number, length: number): ExportField => ({ id, length });
const BASIC = [F(8, 4), F(12, 4), F(7, 2), F(11, 2), F(4, 1), F(1, 4), F(2, 4)];
const RECORD = encodeRecord(BASIC, ['10.1.2.3', '10.4.5.6', 1000, 53, 17, 4242, 7]);

const prng = xorshift32;

/** A random template: 5-40 IANA fields of 1-16 bytes, IDs 256-65535: nearly every one a new layout. */
function randomTemplate(next: () => number): { id: number; fields: ExportField[] } {
  const fields: ExportField[] = [];
  const n = 5 + (next() % 36);
  for (let i = 0; i < n; i++) fields.push(F(1 + (next() % 500), [1, 2, 4, 8, 16][next() % 5]!));
  return { id: 256 + (next() % 65_280), fields };
}

const SOURCES = 1_000;
const PER_SOURCE = 10;

function flood(decoder: Decoder, sourceOf: (i: number) => string, seed = 1): number {
  const next = prng(seed);
  let templates = 0;
  for (let s = 0; s < SOURCES; s++) {
    const exporter = decoder.exporter(sourceOf(s));
    for (let k = 0; k < PER_SOURCE; k += 2) {
      // Two templates per packet, IPFIX and v9 alternately.
      const version = (s + k) % 4 === 0 ? 9 : 10;
      const packet = new ExportPacketBuilder(version, s % 3)
        .templates([randomTemplate(next), randomTemplate(next)])
        .build({ exportSecs: SECS, sequence: k });
      decoder.decode(exporter, packet, T0 + s * 10 + k);
      templates += 2;
    }
  }
  return templates;
}

const BOUNDS: Partial<DecoderOptions> = {
  maxExporters: 200,
  maxStreams: 800,
  maxTemplatesPerStream: 4,
  maxTemplates: 500,
  layoutCacheSize: 256,
};

describe('template flood from 1,000 sources', () => {
  test('caches stay within the configured bounds, evictions and refusals are counted, heap bounded', () => {
    const before = heapAfterGc();
    const sink = new CollectingSink();
    const decoder = new Decoder(sink, BOUNDS);
    const sent = flood(decoder, (s) => `198.18.${s >> 8}.${s & 255}`);
    expect(sent).toBe(10_000);
    const size = decoder.size;
    const perStream = new Map<string, number>();
    for (const t of decoder.templates()) {
      const key = `${t.address}/${t.version}/${t.domain}`;
      perStream.set(key, (perStream.get(key) ?? 0) + 1);
    }
    const c = decoder.counters;
    const grown = heapAfterGc() - before;
    console.log(
      `flood: ${sent} templates from ${SOURCES} sources; held ${size.templates} templates, ${size.layouts} layouts, ` +
        `${size.exporters} exporters; added ${c.templates_added}, evicted ${c.templates_evicted}, refused ` +
        `${c.template_limit}, exporters evicted ${c.exporter_limit}; heap +${(grown / 1048576).toFixed(1)} MiB`,
    );
    expect(size.exporters).toBe(200);
    expect(size.templates).toBeLessThanOrEqual(500);
    expect(size.layouts).toBeLessThanOrEqual(256);
    expect(Math.max(...perStream.values())).toBeLessThanOrEqual(4);
    expect(decoder.templates()).toHaveLength(size.templates);
    // Every exporter past the first 200 pushed the least recently seen one out.
    expect(c.exporter_limit).toBe(SOURCES - 200);
    // Every template offered was either added (possibly evicting one), a replacement, or refused.
    expect(c.templates_added + c.templates_replaced + c.template_limit + c.templates_refreshed).toBe(sent);
    expect(c.templates_evicted).toBeGreaterThan(0);
    expect(decoder.streams().length).toBeLessThanOrEqual(800);
    // What 500 templates and 256 layouts take, not 10,000.
    expect(grown).toBeLessThan(16 * 1024 * 1024);

    // The control: without the bounds the same flood is held whole, and the heap check would fail.
    const beforeControl = heapAfterGc();
    const unbounded = new Decoder(new CollectingSink(), {
      maxExporters: 1_000_000,
      maxStreams: 1_000_000,
      maxTemplatesPerStream: 65_536,
      maxTemplates: 10_000_000,
      layoutCacheSize: 1_000_000,
    });
    flood(unbounded, (s) => `198.18.${s >> 8}.${s & 255}`);
    const controlGrown = heapAfterGc() - beforeControl;
    console.log(
      `flood control (no bounds): held ${unbounded.size.templates} templates, ${unbounded.size.layouts} layouts; ` +
        `heap +${(controlGrown / 1048576).toFixed(1)} MiB`,
    );
    expect(unbounded.size.templates).toBeGreaterThan(9_000);
    expect(controlGrown).toBeGreaterThan(grown * 3);

    // A real exporter arriving after the flood still gets its template and its records.
    const exporter = decoder.exporter('192.0.2.1');
    decoder.decode(
      exporter,
      new ExportPacketBuilder(10, 1)
        .templates([{ id: 300, fields: BASIC }])
        .data(300, [RECORD])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0 + 60_000,
    );
    expect(sink.flows.map((f) => [f.exporter_address, f.src_addr, f.bytes])).toEqual([
      ['192.0.2.1', '10.1.2.3', 4242],
    ]);
  });

  test('spoofed sources outside the allowlist take no exporter slot and cannot evict a real exporter', () => {
    const sink = new CollectingSink();
    const decoder = new Decoder(sink, { ...BOUNDS, allowedExporters: createCidrMatcher(['10.0.0.0/8']) });
    const real = decoder.exporter('10.9.9.9');
    decoder.decode(
      real,
      new ExportPacketBuilder(9, 1)
        .templates([{ id: 300, fields: BASIC }])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    flood(decoder, (s) => `198.18.${s >> 8}.${s & 255}`);
    expect(decoder.counters.exporter_not_allowed).toBe(SOURCES * (PER_SOURCE / 2));
    expect(decoder.size).toMatchObject({ exporters: 1, templates: 1 });
    expect(decoder.counters.exporter_limit).toBe(0);
    decoder.decode(
      real,
      new ExportPacketBuilder(9, 1).data(300, [RECORD]).build({ exportSecs: SECS, sequence: 1 }),
      T0 + 60_000,
    );
    expect(sink.flows.map((f) => [f.exporter_address, f.bytes])).toEqual([['10.9.9.9', 4242]]);
  });

  test('records per datagram are limited: a 1-byte template in a 64 KiB datagram', () => {
    const sink = new CollectingSink();
    const decoder = new Decoder(sink, { maxRecordsPerPacket: 1000 });
    const exporter = decoder.exporter('192.0.2.7');
    const tiny = [F(4, 1)];
    const records = Array.from({ length: 60_000 }, () => encodeRecord(tiny, [17]));
    const packet = new ExportPacketBuilder(10, 1)
      .templates([{ id: 400, fields: tiny }])
      .data(400, records)
      .build({ exportSecs: SECS, sequence: 0 });
    expect(packet.byteLength).toBeGreaterThan(60_000);
    decoder.decode(exporter, packet, T0);
    expect(sink.flows).toHaveLength(1000);
    expect(decoder.counters.packet_record_limit).toBe(1);
    expect(decoder.counters.records).toBe(1000);
  });
});
