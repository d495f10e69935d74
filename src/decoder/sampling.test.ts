import { describe, expect, test } from 'vitest';
import { field, TSHARK_MISSING, tsharkExportRecords } from '../../test/support/tshark-records.js';
import {
  type ExportField,
  ExportPacketBuilder,
  encodeRecord,
  type FieldValue,
} from '../export/packet-builder.js';
import { CollectingSink } from './collecting-sink.js';
import { Decoder, samplingRateOf } from './decoder.js';

const T0 = Date.UTC(2026, 10, 23, 10, 0, 0);
const SECS = T0 / 1000;
const F = (id: number, length: number, enterprise = 0): ExportField => ({ id, length, enterprise });
const float64 = (value: number) => {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setFloat64(0, value);
  return bytes;
};

/**
 * Selector Report Interpretations (RFC 5476): one options template per selector, scoped by
 * selectorId (302), with selectorAlgorithm (304) and the parameters RFC 5477 defines for it. `rate` is
 * what the RFC makes of them, null where it gives no rate (counted as unresolved).
 */
const SELECTORS: ReadonlyArray<{
  name: string;
  id: number;
  fields: ExportField[];
  values: FieldValue[];
  tshark: Record<string, string>;
  rate: number | null;
}> = [
  {
    // The reported Cisco case: the random n-out-of-N selector also carries samplingPacketInterval 1.
    name: '3 random n-out-of-N (Cisco, with a stray samplingPacketInterval 1): population / size',
    id: 1,
    fields: [F(302, 8), F(304, 2), F(305, 4), F(309, 4), F(310, 4)],
    values: [1, 3, 1, 1, 256],
    tshark: {
      'cflow.selector_algorithm': '3',
      'cflow.sampling_packet_interval': '1',
      'cflow.sampling_size': '1',
      'cflow.sampling_population': '256',
    },
    rate: 256,
  },
  {
    name: '1 systematic count-based (Nokia 1/999): (interval + space) / interval',
    id: 2,
    fields: [F(302, 8), F(304, 2), F(305, 4), F(306, 4)],
    values: [2, 1, 1, 999],
    tshark: {
      'cflow.selector_algorithm': '1',
      'cflow.sampling_packet_interval': '1',
      'cflow.sampling_packet_space': '999',
    },
    rate: 1000,
  },
  {
    name: '2 systematic time-based: (time interval + time space) / time interval',
    id: 3,
    fields: [F(302, 8), F(304, 2), F(307, 4), F(308, 4)],
    values: [3, 2, 1_000, 9_000],
    tshark: {
      'cflow.selector_algorithm': '2',
      'cflow.sampling_time_interval': '1000',
      'cflow.sampling_time_space': '9000',
    },
    rate: 10,
  },
  {
    name: '4 uniform probabilistic: 1 / probability',
    id: 4,
    fields: [F(302, 8), F(304, 2), F(311, 8)],
    values: [4, 4, float64(0.01)],
    tshark: { 'cflow.selector_algorithm': '4', 'cflow.sampling_probability': '0.01' },
    rate: 100,
  },
  {
    name: '5 property match filtering: every matching packet is selected, rate 1',
    id: 5,
    fields: [F(302, 8), F(304, 2)],
    values: [5, 5],
    tshark: { 'cflow.selector_algorithm': '5' },
    rate: 1,
  },
  {
    name: '6 hash-based filtering: output range / selected range',
    id: 6,
    fields: [F(302, 8), F(304, 2), F(329, 8), F(330, 8), F(331, 8), F(332, 8)],
    values: [6, 6, 0, 65_535, 0, 255],
    tshark: {
      'cflow.selector_algorithm': '6',
      'cflow.hash_output_range_max': '65535',
      'cflow.hash_selected_range_max': '255',
    },
    rate: 256,
  },
  {
    name: 'an unassigned algorithm (9) is unresolved, whatever else the record carries',
    id: 7,
    fields: [F(302, 8), F(304, 2), F(305, 4), F(306, 4)],
    values: [7, 9, 1, 9],
    tshark: { 'cflow.selector_algorithm': '9' },
    rate: null,
  },
  {
    name: '3 random n-out-of-N without its population is unresolved (not the stray interval 1)',
    id: 8,
    fields: [F(302, 8), F(304, 2), F(305, 4), F(309, 4)],
    values: [8, 3, 1, 1],
    tshark: { 'cflow.selector_algorithm': '3', 'cflow.sampling_size': '1' },
    rate: null,
  },
  {
    name: 'no selectorAlgorithm: the elements in the order used before (interval/space first)',
    id: 9,
    fields: [F(302, 8), F(305, 4), F(306, 4), F(310, 4)],
    values: [9, 1, 99, 512],
    tshark: { 'cflow.sampling_packet_interval': '1', 'cflow.sampling_packet_space': '99' },
    rate: 100,
  },
];

const DATA = [F(8, 4), F(12, 4), F(4, 1), F(1, 4), F(2, 4), F(302, 8)];

function exportPackets(): Uint8Array[] {
  const builder = new ExportPacketBuilder(10, 3);
  builder.optionsTemplates(SELECTORS.map((s) => ({ id: 300 + s.id, scopeCount: 1, fields: s.fields })));
  builder.templates([{ id: 256, fields: DATA }]);
  for (const s of SELECTORS) builder.data(300 + s.id, [encodeRecord(s.fields, s.values)]);
  builder.data(
    256,
    SELECTORS.map((s) => encodeRecord(DATA, ['10.0.0.1', '10.0.0.2', 6, 1_000, 10, s.id])),
  );
  return [builder.build({ exportSecs: SECS, sequence: 0 })];
}

describe('sampling rate chosen by selectorAlgorithm (IE 304, RFC 5476 / RFC 5477)', () => {
  test('each algorithm takes its own parameters; what gives no rate is counted', () => {
    const sink = new CollectingSink();
    const decoder = new Decoder(sink);
    for (const p of exportPackets()) decoder.decode(decoder.exporter('192.0.2.10'), p, T0);
    expect(sink.flows).toHaveLength(SELECTORS.length);
    const got = sink.flows.map((f) => [f.sampling_rate, f.bytes, f.packets]);
    // An unresolved selector leaves the record at the stream's rate (1 here), counted per record.
    const want = SELECTORS.map((s) => [s.rate ?? 1, 1_000 * (s.rate ?? 1), 10 * (s.rate ?? 1)]);
    expect(Object.fromEntries(SELECTORS.map((s, i) => [s.name, got[i]]))).toEqual(
      Object.fromEntries(SELECTORS.map((s, i) => [s.name, want[i]])),
    );
    const unresolved = SELECTORS.filter((s) => s.rate === null).length;
    expect(decoder.counters.sampling_unresolved).toBe(unresolved);
    expect(decoder.counters.sampling_rate_unknown).toBe(unresolved);
    expect(decoder.streams()[0]).toMatchObject({
      sampling_unresolved: unresolved,
      sampling_rate_unknown: unresolved,
      option_records: SELECTORS.length,
    });
  });

  test('samplingRateOf: absent elements give 0 (no rate), unresolved ones -1', () => {
    expect(samplingRateOf(new Map())).toBe(0);
    expect(samplingRateOf(new Map([[34, 64]]))).toBe(64);
    expect(
      samplingRateOf(
        new Map([
          [304, 3],
          [305, 1],
          [309, 1],
          [310, 256],
        ]),
      ),
    ).toBe(256);
    expect(
      samplingRateOf(
        new Map([
          [304, 4],
          [311, 0],
        ]),
      ),
    ).toBe(-1);
    expect(samplingRateOf(new Map([[304, 0]]))).toBe(-1);
  });

  test.skipIf(TSHARK_MISSING !== null)('tshark reads the options records as built', () => {
    const records = tsharkExportRecords(exportPackets());
    const options = records.filter((r) => r.setId > 300);
    expect(options).toHaveLength(SELECTORS.length);
    for (const [i, s] of SELECTORS.entries()) {
      const r = options[i]!;
      expect(r.setId, s.name).toBe(300 + s.id);
      expect(field(r.fields, 'cflow.selector_id'), s.name).toBe(String(s.id));
      for (const [key, value] of Object.entries(s.tshark)) {
        const seen = field(r.fields, key);
        expect(key === 'cflow.sampling_probability' ? Number(seen) : seen, `${s.name}: ${key}`).toBe(
          key === 'cflow.sampling_probability' ? Number(value) : value,
        );
      }
    }
  });
});
