import { describe, expect, test } from 'vitest';
import { createCidrMatcher } from '../common/ip.js';
import {
  buildV5Packet,
  type ExportField,
  ExportPacketBuilder,
  encodeRecord,
} from '../export/packet-builder.js';
import { CollectingSink } from './collecting-sink.js';
import { Decoder, type DecoderOptions } from './decoder.js';

const T0 = Date.UTC(2026, 10, 23, 10, 0, 0);
const SECS = T0 / 1000;

function setup(options: Partial<DecoderOptions> = {}) {
  const sink = new CollectingSink();
  const decoder = new Decoder(sink, options);
  return { sink, decoder, exporter: decoder.exporter('192.0.2.10') };
}

const F = (id: number, length: number, enterprise = 0): ExportField => ({ id, length, enterprise });
/** src, dst, sport, dport, proto, bytes, packets */
const BASIC = [F(8, 4), F(12, 4), F(7, 2), F(11, 2), F(4, 1), F(1, 4), F(2, 4)];
const basic = (src: string, bytes: number, packets: number, extra: number[] = []) =>
  encodeRecord([...BASIC, ...extra.map(() => F(0, 0))], [src, '198.51.100.1', 1234, 443, 6, bytes, packets]);

describe('NetFlow v5', () => {
  test('header sampling scales bytes and packets and keeps the rate; uptime-relative times become UTC', () => {
    const { sink, decoder, exporter } = setup();
    const packet = buildV5Packet(
      // Mode 01 (deterministic) in the top bits, interval 100.
      { sysUptimeMs: 100_000, unixSecs: SECS, unixNsecs: 250_000_000, sequence: 0, sampling: 0x4000 | 100 },
      [
        {
          src: '10.0.0.1',
          dst: '10.0.0.2',
          packets: 3,
          bytes: 180,
          firstUptimeMs: 40_000,
          lastUptimeMs: 90_000,
          srcPort: 1,
          dstPort: 2,
          proto: 17,
        },
        // ICMP echo request: type 8 code 0 in the destination port.
        {
          src: '10.0.0.1',
          dst: '10.0.0.3',
          packets: 1,
          bytes: 84,
          firstUptimeMs: 99_000,
          lastUptimeMs: 99_000,
          srcPort: 0,
          dstPort: 0x0800,
          proto: 1,
        },
      ],
    );
    decoder.decode(exporter, packet, T0 + 5000);
    expect(sink.flows.map((f) => [f.bytes, f.packets, f.sampling_rate, f.flow_start, f.flow_end])).toEqual([
      [18_000, 300, 100, T0 + 250 - 60_000, T0 + 250 - 10_000],
      [8_400, 100, 100, T0 + 250 - 1_000, T0 + 250 - 1_000],
    ]);
    expect(sink.flows[1]).toMatchObject({
      icmp_type: 8,
      icmp_code: 0,
      dst_port: 0x0800,
      time_received: T0 + 5000,
    });
  });

  test('uptime wrap: a flow that started before sysUpTime wrapped past 2^32 ms', () => {
    const { sink, decoder, exporter } = setup();
    decoder.decode(
      exporter,
      buildV5Packet({ sysUptimeMs: 1_000, unixSecs: SECS, sequence: 0 }, [
        {
          src: '10.0.0.1',
          dst: '10.0.0.2',
          packets: 1,
          bytes: 1,
          firstUptimeMs: 2 ** 32 - 2_000,
          lastUptimeMs: 500,
          srcPort: 1,
          dstPort: 2,
          proto: 6,
        },
      ]),
      T0,
    );
    expect([sink.flows[0]!.flow_start, sink.flows[0]!.flow_end]).toEqual([T0 - 3_000, T0 - 500]);
  });

  test('sequence numbers count flows: a missing packet of 2 flows is 2 lost records', () => {
    const { decoder, exporter } = setup();
    const rec = {
      src: '10.0.0.1',
      dst: '10.0.0.2',
      packets: 1,
      bytes: 1,
      firstUptimeMs: 1,
      lastUptimeMs: 1,
      srcPort: 1,
      dstPort: 2,
      proto: 6,
    };
    decoder.decode(
      exporter,
      buildV5Packet({ sysUptimeMs: 10, unixSecs: SECS, sequence: 100 }, [rec, rec]),
      T0,
    );
    decoder.decode(exporter, buildV5Packet({ sysUptimeMs: 20, unixSecs: SECS, sequence: 104 }, [rec]), T0);
    decoder.decode(exporter, buildV5Packet({ sysUptimeMs: 30, unixSecs: SECS, sequence: 105 }, [rec]), T0);
    expect(decoder.streams()[0]).toMatchObject({ sequence_lost: 2, sequence_lost_records: 2, records: 4 });
  });

  test('a count above 30 or beyond the datagram rejects the packet', () => {
    const { sink, decoder, exporter } = setup();
    const ok = buildV5Packet({ sysUptimeMs: 1, unixSecs: SECS, sequence: 0 }, []);
    const bad = new Uint8Array(24 + 48);
    bad.set(ok.subarray(0, 24));
    new DataView(bad.buffer).setUint16(2, 31);
    decoder.decode(exporter, bad, T0);
    new DataView(bad.buffer).setUint16(2, 2);
    decoder.decode(exporter, bad, T0);
    expect(sink.flows).toHaveLength(0);
    expect(decoder.counters.v5_bad_count).toBe(2);
  });
});

describe('NetFlow v9', () => {
  test('sampler options table (IE 48/49/50) scales records that carry IE 48; an unknown id is counted', () => {
    const { sink, decoder, exporter } = setup();
    const samplerTemplate = { id: 300, scopeCount: 1, fields: [F(1, 4), F(48, 1), F(49, 1), F(50, 4)] };
    const dataFields = [...BASIC, F(48, 1)];
    const packet = new ExportPacketBuilder(9, 7)
      .optionsTemplates([samplerTemplate])
      .templates([{ id: 256, fields: dataFields }])
      .data(
        300,
        [
          encodeRecord(samplerTemplate.fields, [0, 1, 2, 512]),
          encodeRecord(samplerTemplate.fields, [0, 2, 2, 64]),
        ],
        { count: false },
      )
      .data(256, [
        encodeRecord(dataFields, ['10.0.0.1', '10.0.0.2', 1, 2, 6, 1000, 10, 1]),
        encodeRecord(dataFields, ['10.0.0.1', '10.0.0.2', 1, 2, 6, 1000, 10, 2]),
        encodeRecord(dataFields, ['10.0.0.1', '10.0.0.2', 1, 2, 6, 1000, 10, 9]),
      ])
      .build({ exportSecs: SECS, sequence: 1, sysUptimeMs: 1000 });
    decoder.decode(exporter, packet, T0);
    expect(sink.flows.map((f) => [f.bytes, f.packets, f.sampling_rate])).toEqual([
      [512_000, 5_120, 512],
      [64_000, 640, 64],
      [1_000, 10, 1],
    ]);
    expect(decoder.streams()[0]).toMatchObject({
      option_records: 2,
      records: 3,
      sampling_rate_unknown: 1,
      domain: 7,
    });
  });

  test('a system-scope samplingInterval (Juniper SRX style) becomes the default rate of the stream', () => {
    const { sink, decoder, exporter } = setup();
    const options = { id: 257, scopeCount: 1, fields: [F(1, 0), F(34, 4), F(35, 1)] };
    decoder.decode(
      exporter,
      new ExportPacketBuilder(9, 1)
        .optionsTemplates([options])
        .templates([{ id: 258, fields: BASIC }])
        .data(257, [encodeRecord(options.fields, [0, 1000, 2])], { count: false })
        .data(258, [basic('10.1.1.1', 100, 1)])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    expect(sink.flows.map((f) => [f.bytes, f.sampling_rate])).toEqual([[100_000, 1000]]);
  });

  test('samplingInterval inside data records (Huawei, Juniper MX) applies per record', () => {
    const { sink, decoder, exporter } = setup();
    const fields = [...BASIC, F(34, 4)];
    decoder.decode(
      exporter,
      new ExportPacketBuilder(9, 0)
        .templates([{ id: 256, fields }])
        .data(256, [
          encodeRecord(fields, ['10.0.0.1', '10.0.0.2', 1, 2, 17, 10, 1, 2048]),
          encodeRecord(fields, ['10.0.0.1', '10.0.0.2', 1, 2, 17, 10, 1, 0]),
        ])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    expect(sink.flows.map((f) => [f.bytes, f.sampling_rate])).toEqual([
      [20_480, 2048],
      [10, 1],
    ]);
  });

  test('templates are per source ID: the same template id in two domains of one exporter', () => {
    const { sink, decoder, exporter } = setup();
    const a = [F(8, 4), F(12, 4), F(1, 4), F(2, 4)];
    const b = [F(1, 8), F(2, 8), F(8, 4), F(12, 4)];
    decoder.decode(
      exporter,
      new ExportPacketBuilder(9, 1)
        .templates([{ id: 256, fields: a }])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    decoder.decode(
      exporter,
      new ExportPacketBuilder(9, 2)
        .templates([{ id: 256, fields: b }])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    decoder.decode(
      exporter,
      new ExportPacketBuilder(9, 1)
        .data(256, [encodeRecord(a, ['10.0.0.1', '10.0.0.2', 500, 5])])
        .build({ exportSecs: SECS, sequence: 1 }),
      T0,
    );
    decoder.decode(
      exporter,
      new ExportPacketBuilder(9, 2)
        .data(256, [encodeRecord(b, [700, 7, '10.0.0.3', '10.0.0.4'])])
        .build({ exportSecs: SECS, sequence: 1 }),
      T0,
    );
    expect(sink.flows.map((f) => [f.observation_domain_id, f.src_addr, f.bytes, f.packets])).toEqual([
      [1, '10.0.0.1', 500, 5],
      [2, '10.0.0.3', 700, 7],
    ]);
  });

  test('data before its template is held and decoded when the template arrives, with its own times', () => {
    const { sink, decoder, exporter } = setup();
    const fields = [...BASIC, F(22, 4), F(21, 4)];
    const record = encodeRecord(fields, ['10.9.9.9', '10.0.0.2', 1, 2, 6, 99, 3, 5_000, 9_000]);
    decoder.decode(
      exporter,
      new ExportPacketBuilder(9, 0)
        .data(256, [record])
        .build({ exportSecs: SECS, sequence: 0, sysUptimeMs: 10_000 }),
      T0,
    );
    expect(sink.flows).toHaveLength(0);
    expect(decoder.counters.sets_missing_template).toBe(1);
    decoder.decode(
      exporter,
      new ExportPacketBuilder(9, 0)
        .templates([{ id: 256, fields }])
        .build({ exportSecs: SECS + 60, sequence: 1, sysUptimeMs: 70_000 }),
      T0 + 60_000,
    );
    expect(sink.flows.map((f) => [f.src_addr, f.bytes, f.flow_start, f.flow_end, f.time_received])).toEqual([
      ['10.9.9.9', 99, T0 - 5_000, T0 - 1_000, T0],
    ]);
    expect(decoder.counters.pending_decoded).toBe(1);
    expect(decoder.size.pendingBytes).toBe(0);
  });

  test('held data expires after pendingTimeoutMs and is counted as dropped', () => {
    const { sink, decoder, exporter } = setup({ pendingTimeoutMs: 1_000 });
    decoder.decode(
      exporter,
      new ExportPacketBuilder(9, 0)
        .data(256, [basic('10.0.0.1', 1, 1)])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    decoder.expire(T0 + 2_000);
    decoder.decode(
      exporter,
      new ExportPacketBuilder(9, 0)
        .templates([{ id: 256, fields: BASIC }])
        .build({ exportSecs: SECS, sequence: 1 }),
      T0 + 3_000,
    );
    expect(sink.flows).toHaveLength(0);
    expect(decoder.counters.pending_expired).toBe(1);
    expect(decoder.size.pendingBytes).toBe(0);
  });

  test('held data is bounded in bytes; the excess is counted, not kept', () => {
    const { decoder, exporter } = setup({ pendingMaxBytes: 1_000, pendingStreamMaxBytes: 1_000 });
    const record = basic('10.0.0.1', 1, 1);
    for (let i = 0; i < 100; i++) {
      decoder.decode(
        exporter,
        new ExportPacketBuilder(9, 0).data(256, [record, record]).build({ exportSecs: SECS, sequence: i }),
        T0,
      );
    }
    // Two 21-byte records padded to 44 bytes per set: 22 sets fit in 1000 bytes.
    expect(decoder.size.pendingBytes).toBe(22 * 44);
    expect(decoder.counters.pending_overflow).toBe(78);
  });

  test('sequence numbers count packets: gaps become estimated lost records', () => {
    const { decoder, exporter } = setup();
    const packet = (seq: number, uptime: number) =>
      new ExportPacketBuilder(9, 0)
        .templates([{ id: 256, fields: BASIC }])
        .data(
          256,
          Array.from({ length: 10 }, () => basic('10.0.0.1', 1, 1)),
        )
        .build({ exportSecs: SECS, sequence: seq, sysUptimeMs: uptime });
    decoder.decode(exporter, packet(10, 100), T0);
    decoder.decode(exporter, packet(11, 200), T0);
    decoder.decode(exporter, packet(14, 300), T0);
    // A late duplicate, then an exporter restart (uptime goes back).
    decoder.decode(exporter, packet(12, 301), T0);
    decoder.decode(exporter, packet(0, 5), T0);
    decoder.decode(exporter, packet(1, 10), T0);
    expect(decoder.streams()[0]).toMatchObject({
      sequence_lost: 2,
      sequence_lost_records: 20,
      sequence_reordered: 1,
      sequence_resets: 1,
    });
  });
});

describe('IPFIX', () => {
  test('variable-length, enterprise and RFC 5103 reverse fields; absolute millisecond times', () => {
    const { sink, decoder, exporter } = setup();
    const fields = [
      F(8, 4),
      F(12, 4),
      F(82, 65535), // interfaceName, variable length
      F(1, 8),
      F(2, 8),
      F(1, 8, 29305), // reverseOctetDeltaCount
      F(2, 8, 29305),
      F(1234, 65535, 5951), // a NetScaler element
      F(152, 8),
      F(153, 8),
      F(4, 1),
    ];
    const cookie = new Uint8Array(602).fill(0x41);
    decoder.decode(
      exporter,
      new ExportPacketBuilder(10, 99)
        .templates([{ id: 400, fields }])
        .data(400, [
          encodeRecord(fields, [
            '10.0.0.1',
            '10.0.0.2',
            'ge-0/0/1',
            1000,
            10,
            5000,
            12,
            cookie,
            T0 - 9_000,
            T0 - 1_000,
            6,
          ]),
          encodeRecord(fields, ['10.0.0.3', '10.0.0.4', '', 1, 1, 0, 0, 'x', T0, T0, 17]),
        ])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    expect(
      sink.flows.map((f) => [
        f.src_addr,
        f.bytes,
        f.packets,
        f.reverse_bytes,
        f.reverse_packets,
        f.flow_start,
        f.flow_end,
        f.proto,
      ]),
    ).toEqual([
      ['10.0.0.1', 1000, 10, 5000, 12, T0 - 9_000, T0 - 1_000, 6],
      ['10.0.0.3', 1, 1, 0, 0, T0, T0, 17],
    ]);
  });

  test('IPv6 addresses, NTP microsecond times and delta-before-export times', () => {
    const { sink, decoder, exporter } = setup();
    const ntpSeconds = SECS + 2_208_988_800;
    const ntp = (secs: number, ms: number) =>
      (BigInt(secs) << 32n) | BigInt(Math.round((ms / 1000) * 2 ** 32));
    const ntpFields = [F(27, 16), F(28, 16), F(154, 8), F(155, 8), F(1, 4)];
    const deltaFields = [F(27, 16), F(28, 16), F(158, 4), F(159, 4), F(1, 4)];
    decoder.decode(
      exporter,
      new ExportPacketBuilder(10, 0)
        .templates([
          { id: 256, fields: ntpFields },
          { id: 257, fields: deltaFields },
        ])
        .data(256, [
          encodeRecord(ntpFields, [
            '2001:db8::1',
            '2001:db8::2',
            ntp(ntpSeconds - 2, 500),
            ntp(ntpSeconds, 250),
            64,
          ]),
        ])
        .data(257, [encodeRecord(deltaFields, ['2001:db8::3', 'fe80::1', 4_000_000, 1_500_000, 64])])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    expect(sink.flows.map((f) => [f.src_addr, f.dst_addr, f.flow_start, f.flow_end])).toEqual([
      ['2001:db8::1', '2001:db8::2', T0 - 1_500, T0 + 250],
      ['2001:db8::3', 'fe80::1', T0 - 4_000, T0 - 1_500],
    ]);
  });

  test('flowStart/EndSysUpTime are relative to systemInitTimeMilliseconds from options data', () => {
    const { sink, decoder, exporter } = setup();
    const init = { id: 256, scopeCount: 1, fields: [F(144, 4), F(160, 8)] };
    const fields = [...BASIC, F(22, 4), F(21, 4)];
    decoder.decode(
      exporter,
      new ExportPacketBuilder(10, 0)
        .templates([{ id: 1024, fields }])
        .optionsTemplates([init])
        .data(256, [encodeRecord(init.fields, [1, T0 - 3_600_000])])
        .data(1024, [encodeRecord(fields, ['10.0.0.1', '10.0.0.2', 1, 2, 6, 10, 1, 1_000, 2_000])])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    expect([sink.flows[0]!.flow_start, sink.flows[0]!.flow_end]).toEqual([T0 - 3_599_000, T0 - 3_598_000]);
    expect(decoder.counters.time_base_unknown).toBe(0);
  });

  test('template withdrawal: one id, then all templates of the domain', () => {
    const { sink, decoder, exporter } = setup();
    const send = (b: ExportPacketBuilder) =>
      decoder.decode(exporter, b.build({ exportSecs: SECS, sequence: 0 }), T0);
    send(
      new ExportPacketBuilder(10, 5).templates([
        { id: 256, fields: BASIC },
        { id: 257, fields: BASIC },
        { id: 258, fields: BASIC },
      ]),
    );
    send(new ExportPacketBuilder(10, 5).withdraw([256]));
    send(
      new ExportPacketBuilder(10, 5)
        .data(256, [basic('10.0.0.1', 1, 1)])
        .data(257, [basic('10.0.0.2', 1, 1)]),
    );
    expect(sink.flows.map((f) => f.src_addr)).toEqual(['10.0.0.2']);
    send(new ExportPacketBuilder(10, 5).withdraw([2]));
    expect(decoder.streams()[0]!.templates).toBe(0);
    expect(decoder.counters.templates_withdrawn).toBe(3);
  });

  test('a template id reused with a new layout replaces the old one', () => {
    const { sink, decoder, exporter } = setup();
    const other = [F(1, 4), F(8, 4), F(12, 4)];
    decoder.decode(
      exporter,
      new ExportPacketBuilder(10, 0)
        .templates([{ id: 256, fields: BASIC }])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    decoder.decode(
      exporter,
      new ExportPacketBuilder(10, 0)
        .templates([{ id: 256, fields: other }])
        .data(256, [encodeRecord(other, [77, '10.7.7.7', '10.8.8.8'])])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    expect(sink.flows.map((f) => [f.src_addr, f.bytes])).toEqual([['10.7.7.7', 77]]);
    expect(decoder.counters.templates_replaced).toBe(1);
  });

  test('sequence numbers count data records (RFC 7011) and softflowd’s inclusive variant reports no false gaps', () => {
    const message = (seq: number, records: number) =>
      new ExportPacketBuilder(10, 0)
        .templates([{ id: 256, fields: BASIC }])
        .data(
          256,
          Array.from({ length: records }, () => basic('10.0.0.1', 1, 1)),
        )
        .build({ exportSecs: SECS, sequence: seq });
    const rfc = setup();
    for (const [seq, n] of [
      [0, 3],
      [3, 5],
      [8, 2],
      [20, 1],
    ] as const)
      rfc.decoder.decode(rfc.exporter, message(seq, n), T0);
    expect(rfc.decoder.streams()[0]).toMatchObject({ sequence_lost: 10, sequence_lost_records: 10 });
    // softflowd: the sequence already includes this message's records.
    const inclusive = setup();
    for (const [seq, n] of [
      [3, 3],
      [8, 5],
      [10, 2],
      [14, 4],
      [15, 1],
    ] as const)
      inclusive.decoder.decode(inclusive.exporter, message(seq, n), T0);
    expect(inclusive.decoder.streams()[0]).toMatchObject({ sequence_lost: 0 });
  });

  test('softflowd 1.1.0 IPFIX: the sequence includes this message and leaves out options records', () => {
    const { decoder, exporter } = setup();
    const init = { id: 256, scopeCount: 1, fields: [F(144, 4), F(160, 8)] };
    let sequence = 0;
    const lost = () => decoder.streams()[0]!;
    for (let message = 0; message < 40; message++) {
      const flows = 1 + ((message * 7) % 23);
      sequence += flows;
      const builder = new ExportPacketBuilder(10, 0);
      // Templates and the options record every 16 messages, as softflowd sends them.
      if (message % 16 === 0) {
        builder
          .templates([{ id: 1024, fields: BASIC }])
          .optionsTemplates([init])
          .data(256, [encodeRecord(init.fields, [1, T0 - 60_000])]);
      }
      builder.data(
        1024,
        Array.from({ length: flows }, () => basic('10.0.0.1', 1, 1)),
      );
      // One lost message (message 30): its records are the gap.
      if (message === 30) {
        expect(lost()).toMatchObject({ sequence_lost: 0, sequence_reordered: 0 });
        continue;
      }
      decoder.decode(exporter, builder.build({ exportSecs: SECS, sequence }), T0);
    }
    expect(lost()).toMatchObject({
      sequence_lost: 1 + ((30 * 7) % 23),
      sequence_reordered: 0,
      sequence_resets: 0,
    });
  });
});

describe('state, limits and configuration', () => {
  test('templates and sampler tables survive a restart through exportState/importState', () => {
    const first = setup();
    const sampler = { id: 300, scopeCount: 1, fields: [F(48, 2), F(50, 4)] };
    const fields = [...BASIC, F(48, 2)];
    first.decoder.decode(
      first.exporter,
      new ExportPacketBuilder(9, 3)
        .optionsTemplates([sampler])
        .templates([{ id: 256, fields }])
        .data(300, [encodeRecord(sampler.fields, [5, 10])], { count: false })
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    const state = JSON.parse(JSON.stringify(first.decoder.exportState(T0)));
    const second = setup();
    expect(second.decoder.importState(state, T0 + 60_000)).toBe(2);
    second.decoder.decode(
      second.exporter,
      new ExportPacketBuilder(9, 3)
        .data(256, [encodeRecord(fields, ['10.0.0.1', '10.0.0.2', 1, 2, 6, 100, 1, 5])])
        .build({ exportSecs: SECS, sequence: 1 }),
      T0 + 60_000,
    );
    expect(second.sink.flows.map((f) => [f.bytes, f.sampling_rate])).toEqual([[1000, 10]]);
    // Past the template timeout nothing is restored.
    expect(setup().decoder.importState(state, T0 + 3 * 3_600_000)).toBe(0);
  });

  test('exporters sending the same template layouts share them; the state file stores each layout once', () => {
    const { decoder } = setup();
    const layouts = Array.from({ length: 10 }, (_, i) => [...BASIC, F(1000 + i, 2)]);
    for (let e = 0; e < 500; e++) {
      decoder.decode(
        decoder.exporter(`10.50.${e >> 8}.${e & 255}`),
        new ExportPacketBuilder(10, e % 3)
          .templates(layouts.map((fields, i) => ({ id: 256 + i, fields })))
          .build({ exportSecs: SECS, sequence: 0 }),
        T0,
      );
    }
    // setup() made one exporter of its own.
    expect(decoder.size).toMatchObject({ exporters: 501, templates: 5000, layouts: 10, compiled: 0 });
    const state = decoder.exportState(T0);
    expect(state.layouts).toHaveLength(10);
    expect(state.streams.reduce((n, s) => n + s.templates.length, 0)).toBe(5000);
    // A refresh with the same layout is not a new template; a new layout under the same id replaces it.
    decoder.decode(
      decoder.exporter('10.50.0.0'),
      new ExportPacketBuilder(10, 0)
        .templates([{ id: 256, fields: layouts[0]! }])
        .build({ exportSecs: SECS, sequence: 1 }),
      T0,
    );
    expect(decoder.counters).toMatchObject({
      templates_refreshed: 1,
      templates_replaced: 0,
      templates_added: 5000,
    });
  });

  test('unused templates expire', () => {
    const { decoder, exporter } = setup({ templateTimeoutMs: 60_000 });
    decoder.decode(
      exporter,
      new ExportPacketBuilder(10, 0)
        .templates([{ id: 256, fields: BASIC }])
        .build({ exportSecs: SECS, sequence: 0 }),
      T0,
    );
    decoder.expire(T0 + 30_000);
    expect(decoder.size.templates).toBe(1);
    decoder.expire(T0 + 61_000);
    expect(decoder.size.templates).toBe(0);
    expect(decoder.counters.templates_expired).toBe(1);
  });

  test('exporters outside the allowlist are counted and dropped', () => {
    const { sink, decoder } = setup({
      allowedExporters: createCidrMatcher(['192.0.2.0/24', '2001:db8::/32']),
    });
    const packet = buildV5Packet({ sysUptimeMs: 1, unixSecs: SECS, sequence: 0 }, [
      {
        src: '10.0.0.1',
        dst: '10.0.0.2',
        packets: 1,
        bytes: 1,
        firstUptimeMs: 1,
        lastUptimeMs: 1,
        srcPort: 1,
        dstPort: 2,
        proto: 6,
      },
    ]);
    decoder.decode(decoder.exporter('192.0.2.77'), packet, T0);
    decoder.decode(decoder.exporter('203.0.113.5'), packet, T0);
    decoder.decode(decoder.exporter('2001:db8::5'), packet, T0);
    expect(sink.flows.map((f) => f.exporter_address)).toEqual(['192.0.2.77', '2001:db8::5']);
    expect(decoder.counters.exporter_not_allowed).toBe(1);
  });

  test('configured sampling: a default for silent exporters, and a forced override', () => {
    const packet = (sampling: number) =>
      buildV5Packet({ sysUptimeMs: 1, unixSecs: SECS, sequence: 0, sampling }, [
        {
          src: '10.0.0.1',
          dst: '10.0.0.2',
          packets: 2,
          bytes: 100,
          firstUptimeMs: 1,
          lastUptimeMs: 1,
          srcPort: 1,
          dstPort: 2,
          proto: 6,
        },
      ]);
    const { sink, decoder } = setup({
      samplingOverrides: [
        { matcher: createCidrMatcher(['192.0.2.0/25']), rate: 10, force: false },
        { matcher: createCidrMatcher(['192.0.2.128/25']), rate: 7, force: true },
      ],
    });
    decoder.decode(decoder.exporter('192.0.2.1'), packet(0), T0); // silent: configured default 10
    decoder.decode(decoder.exporter('192.0.2.2'), packet(50), T0); // reports 50: wins over the default
    decoder.decode(decoder.exporter('192.0.2.200'), packet(50), T0); // forced 7
    expect(sink.flows.map((f) => [f.sampling_rate, f.bytes])).toEqual([
      [10, 1000],
      [50, 5000],
      [7, 700],
    ]);
  });
});
