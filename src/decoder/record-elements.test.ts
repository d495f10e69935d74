import { describe, expect, test } from 'vitest';
import { dateToMs, secondsToMs } from '../../test/support/tshark.js';
import { field, TSHARK_MISSING, tsharkExportRecords } from '../../test/support/tshark-records.js';
import { type ExportField, ExportPacketBuilder, encodeRecord } from '../export/packet-builder.js';
import { CollectingSink } from './collecting-sink.js';
import { Decoder } from './decoder.js';

const T0 = Date.UTC(2026, 10, 23, 10, 0, 0);
const SECS = T0 / 1000;
const F = (id: number, length: number, enterprise = 0): ExportField => ({ id, length, enterprise });

function decodeAll(packets: readonly Uint8Array[], compile = true) {
  const sink = new CollectingSink();
  const decoder = new Decoder(sink, { compile });
  const exporter = decoder.exporter('192.0.2.10');
  for (const p of packets) decoder.decode(exporter, p, T0);
  return { sink, decoder };
}

describe('systemInitTimeMilliseconds (IE 160) inside data records (Huawei NetStream)', () => {
  // src, dst, proto, bytes, packets, flowStartSysUpTime, flowEndSysUpTime, systemInitTimeMilliseconds
  const fields = [F(8, 4), F(12, 4), F(4, 1), F(1, 4), F(2, 4), F(22, 4), F(21, 4), F(160, 8)];
  // Two boards of one device restarted at different times, each record with its own init time.
  const BOOT_A = T0 - 3_600_000;
  const BOOT_B = T0 - 86_400_000;
  const packets = () => {
    const init = { id: 400, scopeCount: 1, fields: [F(144, 4), F(160, 8)] };
    return [
      new ExportPacketBuilder(10, 5)
        .templates([{ id: 256, fields }])
        .data(256, [
          encodeRecord(fields, ['10.0.0.1', '10.0.0.2', 6, 100, 1, 1_000, 2_000, BOOT_A]),
          encodeRecord(fields, ['10.0.0.3', '10.0.0.4', 17, 200, 2, 86_000_000, 86_399_000, BOOT_B]),
        ])
        .build({ exportSecs: SECS, sequence: 0 }),
      // Options data announcing another init time: a record's own IE 160 still wins for that record.
      new ExportPacketBuilder(10, 5)
        .optionsTemplates([init])
        .data(400, [encodeRecord(init.fields, [1, T0 - 60_000])])
        .data(256, [encodeRecord(fields, ['10.0.0.5', '10.0.0.6', 6, 300, 3, 5_000, 6_000, BOOT_A])])
        .build({ exportSecs: SECS, sequence: 2 }),
    ];
  };
  const expected = [
    [BOOT_A + 1_000, BOOT_A + 2_000],
    [BOOT_B + 86_000_000, BOOT_B + 86_399_000],
    [BOOT_A + 5_000, BOOT_A + 6_000],
  ];

  test('each record is anchored at its own init time; no time_base_unknown', () => {
    for (const compile of [true, false]) {
      const { sink, decoder } = decodeAll(packets(), compile);
      expect(sink.flows.map((f) => [f.flow_start, f.flow_end])).toEqual(expected);
      expect(decoder.counters.time_base_unknown).toBe(0);
      expect(decoder.streams()[0]!.time_base_unknown).toBe(0);
    }
  });

  test.skipIf(TSHARK_MISSING !== null)('tshark: system init time plus the relative start/end', () => {
    const records = tsharkExportRecords(packets()).filter((r) => r.setId === 256);
    expect(
      records.map((r) => {
        const init = dateToMs(field(r.fields, 'cflow.sys_init_time'));
        const times = r.fields['cflow.timedelta_tree'] as Record<string, string>;
        return [init + secondsToMs(times['cflow.timestart']!), init + secondsToMs(times['cflow.timeend']!)];
      }),
    ).toEqual(expected);
  });
});

describe('ingressPhysicalInterface / egressPhysicalInterface (IE 252/253)', () => {
  const physical = [F(8, 4), F(12, 4), F(4, 1), F(1, 4), F(2, 4), F(252, 4), F(253, 4)];
  const both = [F(8, 4), F(12, 4), F(4, 1), F(1, 4), F(2, 4), F(10, 4), F(14, 4), F(252, 4), F(253, 4)];
  const packets = () => [
    new ExportPacketBuilder(10, 0)
      .templates([
        { id: 256, fields: physical },
        { id: 257, fields: both },
      ])
      .data(256, [encodeRecord(physical, ['10.0.0.1', '10.0.0.2', 6, 100, 1, 517, 612])])
      .data(257, [encodeRecord(both, ['10.0.0.1', '10.0.0.2', 6, 100, 1, 33, 34, 517, 612])])
      .build({ exportSecs: SECS, sequence: 0 }),
  ];

  test('fill in_if/out_if when the template has no IE 10/14; the logical ones win when present', () => {
    for (const compile of [true, false]) {
      const { sink } = decodeAll(packets(), compile);
      expect(sink.flows.map((f) => [f.template_id, f.in_if, f.out_if])).toEqual([
        [256, 517, 612],
        [257, 33, 34],
      ]);
    }
  });

  test.skipIf(TSHARK_MISSING !== null)('tshark reads the same physical interfaces', () => {
    const r = tsharkExportRecords(packets())[0]!.fields;
    expect([
      field(r, 'cflow.ingress_physical_interface'),
      field(r, 'cflow.egress_physical_interface'),
    ]).toEqual(['517', '612']);
  });
});

describe('an element repeated in a template (tunnels: outer and inner header)', () => {
  // RFC 7011 §8: repeated elements follow the order in which the Metering Process treats them, and
  // a packet is parsed from the outside in: the first occurrence is the outer (tunnel) header.
  const fields = [
    F(8, 4),
    F(12, 4),
    F(4, 1),
    F(8, 4),
    F(12, 4),
    F(4, 1),
    F(7, 2),
    F(11, 2),
    F(27, 16),
    F(27, 16),
    F(1, 4),
    F(2, 4),
  ];
  const packets = () => [
    new ExportPacketBuilder(10, 0)
      .templates([{ id: 256, fields }])
      .data(256, [
        encodeRecord(fields, [
          '203.0.113.1',
          '198.51.100.1',
          47,
          '10.0.0.1',
          '10.0.0.2',
          6,
          40_000,
          443,
          '2001:db8::1',
          '2001:db8::2',
          1_500,
          1,
        ]),
      ])
      .build({ exportSecs: SECS, sequence: 0 }),
  ];

  test('the first occurrence wins for the flow columns, compiled and interpreted alike', () => {
    for (const compile of [true, false]) {
      const { sink } = decodeAll(packets(), compile);
      expect(sink.flows.map((f) => [f.src_addr, f.dst_addr, f.proto, f.src_port, f.dst_port])).toEqual([
        ['203.0.113.1', '198.51.100.1', 47, 40_000, 443],
      ]);
      expect(sink.flows[0]!.elements).toMatchObject({
        sourceIPv4Address: 0xcb007101,
        protocolIdentifier: 47,
      });
    }
  });

  test.skipIf(TSHARK_MISSING !== null)('tshark lists the occurrences in template order, outer first', () => {
    const r = tsharkExportRecords(packets())[0]!.fields;
    expect([r['cflow.srcaddr'], r['cflow.dstaddr'], r['cflow.protocol']]).toEqual([
      ['203.0.113.1', '10.0.0.1'],
      ['198.51.100.1', '10.0.0.2'],
      ['47', '6'],
    ]);
  });
});
