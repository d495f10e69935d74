import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../../../test/support/detection.js';
import { ACK, ICMP, PSH, TrafficBuilder, UDP } from '../../../../test/support/packets.js';
import type { Finding } from '../../../findings/model.js';
import { queryRows } from '../../../storage/clickhouse.js';

// Aligned to the backfill's 300 s chunks, so that each scenario knows which window it falls in.
const T0 = Math.floor(trafficBase() / 300e6) * 300e6;
const S = 1_000_000;
const ID = 'volumetric-flood';

/** `count` times spread evenly over [from, from + durationUs), epoch µs. */
function spread(from: number, durationUs: number, count: number, phase = 0): Float64Array {
  const out = new Float64Array(count);
  const step = durationUs / count;
  for (let i = 0; i < count; i++) out[i] = from + phase * step + i * step;
  return out;
}

let h: DetectionHarness;
let findings: Finding[];
let sampled: Finding[];
let splitRecords: { records: number; timeouts: number };

const lowThresholdHosts = { cidr: '10.1.2.0/24', pps: 2_000, flowsPerSecond: 100 };
const straddled = { cidr: '10.1.4.0/24', flowsPerSecond: 500 };
const outboundTarget = { cidr: '192.0.2.99/32', pps: 1_000 };

beforeAll(async () => {
  h = await DetectionHarness.open();
  const b = new TrafficBuilder();

  // Positive at the default thresholds: 100 Internet hosts send 30,000 UDP packets/s in total to an
  // internal server for 15 s (T0+12 s to T0+27 s). Each source is one 15 s flow that straddles two 10 s
  // buckets: pro-rated, the buckets hold 24,000 and 21,000 pps; counted where each flow starts, the
  // first bucket would show 45,000.
  for (let s = 0; s < 100; s++) {
    b.packetTrain(
      {
        src: `203.0.113.${s + 1}`,
        dst: '10.1.1.10',
        proto: UDP,
        sport: 40_000 + s,
        dport: 1_000 + s,
        payload: 64,
      },
      spread(T0 + 12 * S, 15 * S, 4_500, s / 100),
    );
  }

  // Positive on flows per second at the defaults: 40,000 spoofed sources each send one UDP packet in
  // 10 s (4,000 new flows/s, 4,000 pps: only the flows threshold is crossed).
  for (let i = 0; i < 40_000; i++) {
    b.packet({
      t: T0 + 40 * S + i * 250,
      src: `198.18.${Math.floor(i / 250)}.${(i % 250) + 1}`,
      dst: '10.1.1.20',
      proto: UDP,
      sport: 1_024 + (i % 60_000),
      dport: 27_015,
      payload: 30,
    });
  }

  // Positive under a host override (2,000 pps for 10.1.2.0/24): an ICMP echo flood of 3,000 pps from
  // 30 sources for 20 s; the victim's echo replies do not make it a conversation.
  for (let s = 0; s < 30; s++) {
    const times = spread(T0 + 60 * S, 20 * S, 2_000, s / 30);
    b.packetTrain({ src: `192.0.2.${s + 1}`, dst: '10.1.2.5', proto: ICMP, icmpType: 8, payload: 56 }, times);
    b.packetTrain(
      { src: '10.1.2.5', dst: `192.0.2.${s + 1}`, proto: ICMP, icmpType: 0, payload: 56 },
      times.map((t) => t + 200),
    );
  }

  // Look-alike, same override: 20 one-way UDP streams of 75 pps each for 60 s (1,500 pps in total,
  // under 2,000). Counted in the bucket where each flow starts or ends it would be 9,000 pps.
  for (let s = 0; s < 20; s++) {
    b.packetTrain(
      { src: `192.0.2.${100 + s}`, dst: '10.1.2.6', proto: UDP, sport: 5_004, dport: 5_004, payload: 1_200 },
      spread(T0 + 100 * S, 60 * S, 4_500, s / 20),
    );
  }

  // Look-alike, same override: a flash crowd of 2,000 clients, each a complete HTTPS session, in 10 s
  // (200 new connections/s toward the server, twice the host's flows threshold, all answered).
  for (let i = 0; i < 2_000; i++) {
    b.tcpSession({
      t: T0 + 180 * S + i * 5_000,
      client: `100.${64 + Math.floor(i / 250)}.${i % 250}.1`,
      server: '10.1.2.7',
      sport: 50_000 + (i % 10_000),
      dport: 443,
      exchanges: [{ up: 600, down: 8_000 }],
    });
  }

  // Look-alike at the defaults: a storage host pulls a backup at 1.5 Gbit/s for 10 s over one TCP
  // connection (rsync); it acknowledges every other segment.
  b.tcpSession({
    t: T0 + 200 * S,
    client: '10.1.3.9',
    server: '10.1.3.8',
    sport: 41_000,
    dport: 873,
    exchanges: [{ up: 200, down: 1_875_000_000 }],
    mss: 65_000,
    gapUs: 347,
  });

  // Look-alike at the defaults: a QUIC download of 1.2 Gbit/s (UDP 443, 60 kB datagrams to keep the
  // packet count small), acknowledged by the client every 10 datagrams.
  const quic = spread(T0 + 220 * S, 10 * S, 25_000);
  b.packetTrain(
    { src: '142.250.1.1', dst: '10.1.3.20', proto: UDP, sport: 443, dport: 55_000, payload: 60_000 },
    quic,
  );
  b.packetTrain(
    { src: '10.1.3.20', dst: '142.250.1.1', proto: UDP, sport: 55_000, dport: 443, payload: 40 },
    quic.filter((_, i) => i % 10 === 0).map((t) => t + 300),
  );

  // Positive, outbound, under an override for the target (1,000 pps): 20 internal hosts flood an
  // external address with TCP ACK packets (1,500 pps for 20 s); the target only resets.
  for (let s = 0; s < 20; s++) {
    const times = spread(T0 + 240 * S, 20 * S, 1_500, s / 20);
    b.packetTrain(
      { src: `10.5.0.${s + 1}`, dst: '192.0.2.99', proto: 6, sport: 30_000 + s, dport: 80, flags: ACK | PSH },
      times,
    );
    b.packetTrain(
      { src: '192.0.2.99', dst: `10.5.0.${s + 1}`, proto: 6, sport: 80, dport: 30_000 + s, flags: 0x04 },
      times.map((t) => t + 100),
    );
  }

  // Positive across two detection windows (override: 500 new flows/s): 600 single-packet flows/s for
  // 20 s from T0+290 s, so half the flows are new in the window ending at T0+300 s and half in the next.
  for (let i = 0; i < 12_000; i++) {
    b.packet({
      t: T0 + 290 * S + i * 1_666.66,
      src: `198.19.${i >> 8}.${i & 255}`,
      dst: '10.1.4.4',
      proto: UDP,
      sport: 2_000 + i,
      dport: 123,
      payload: 40,
    });
  }

  const loaded = await h.load(b);

  // Look-alike, exported with a short active timeout (softflowd maxlife 20 s, checked every 5 s): 1,500
  // UDP streams of 1 packet/s toward one host (override: 100 new flows/s), started over 60 s (25 new
  // flows/s) and lasting 90 s. The exporter splits them in bursts: an expiry check cuts every stream
  // past its lifetime, and their next records all begin within a second. Those are not new flows.
  const split = new TrafficBuilder();
  for (let i = 0; i < 1_500; i++) {
    split.packetTrain(
      {
        src: `100.72.${Math.floor(i / 250)}.${(i % 250) + 1}`,
        dst: '10.1.2.8',
        proto: UDP,
        sport: 6_000,
        dport: 6_000,
        payload: 100,
      },
      spread(T0 + 600 * S + i * 40_000, 90 * S, 90),
    );
  }
  const splitLoaded = await h.load(split, { timeouts: { maxlife: 20, expint: 5 } });
  const { engine } = h.detection({
    detectors: { [ID]: { params: { hostOverrides: [lowThresholdHosts, outboundTarget, straddled] } } },
  });
  await engine.backfill({ from: loaded.firstMs - 60_000, to: splitLoaded.lastMs + 600_000, detectors: [ID] });
  findings = await h.findings(ID);
  splitRecords = (
    await queryRows<{ records: number; timeouts: number }>(
      h.store,
      "SELECT count() AS records, countIf(end_reason = 2) AS timeouts FROM flows WHERE dst_addr = toIPv6('::ffff:10.1.2.8')",
    )
  )[0]!;

  // Sampling: softflowd -r cannot sample, so these records are inserted as a 1:100 sampling exporter
  // sends them, 20 minutes later: 600 single-packet flows in 10 s to each of two hosts (60 flows/s
  // observed, 6,000/s real at 1:100), packets and bytes already scaled by the rate.
  const base = T0 + 1_200 * S;
  const time = (us: number) => new Date(us / 1000).toISOString().replace('T', ' ').replace('Z', '');
  const rows: object[] = [];
  for (const [dst, rate] of [
    ['10.7.0.1', 100],
    ['10.7.0.2', 1],
  ] as const) {
    for (let i = 0; i < 600; i++) {
      const t = base + 10 * S + i * 16_000;
      rows.push({
        time_received: time(base + 30 * S).slice(0, 19),
        flow_start: time(t),
        flow_end: time(t),
        exporter_address: '::ffff:192.0.2.251',
        src_addr: `::ffff:198.18.${i >> 8}.${i & 255}`,
        dst_addr: `::ffff:${dst}`,
        src_port: 1_024 + i,
        dst_port: 53,
        proto: 17,
        bytes: 60 * rate,
        packets: rate,
        sampling_rate: rate,
      });
    }
  }
  // With its own deduplication token: on the embedded store the collector's last token stays set in
  // the session, and an insert without one would be dropped as a replay of that batch.
  await h.store.client.insert({
    table: 'flows',
    values: rows,
    format: 'JSONEachRow',
    clickhouse_settings: { insert_deduplication_token: `${ID}-sampled` },
  });
  await engine.backfill({ from: base / 1000, to: base / 1000 + 300_000, detectors: [ID] });
  sampled = (await h.findings(ID)).filter((f) => f.dst_ip?.startsWith('10.7.'));
}, 120_000);

afterAll(async () => {
  await h?.close();
});

const around = (value: unknown, expected: number, tolerance = 0.02) =>
  typeof value === 'number' && Math.abs(value - expected) <= expected * tolerance;
const near = (iso: string, us: number, toleranceMs = 1_500) =>
  Math.abs(Date.parse(iso) - us / 1000) < toleranceMs;

describe(ID, () => {
  test('a UDP flood over the default pps threshold, with pro-rated rates, sources and thresholds', () => {
    const f = findings.find((x) => x.dst_ip === '10.1.1.10');
    expect(f).toBeDefined();
    expect(f!.technique_ids).toEqual(['T1498.001']);
    expect(f!.tactic_ids).toEqual(['TA0040']);
    expect(f!.src_ip).toBeNull();
    expect(f!.severity).toBe('medium');
    expect(f!.evidence.exceeded).toEqual(['pps']);
    // Pro-rated: 8 of the 15 s fall in the bucket [10 s, 20 s): 24,000 pps.
    expect(f!.evidence.peak_pps).toBeGreaterThan(23_000);
    expect(f!.evidence.peak_pps).toBeLessThan(25_000);
    expect(f!.evidence.over_threshold_buckets).toBe(2);
    expect(f!.evidence.threshold_pps).toBe(20_000);
    expect(f!.evidence.threshold_mbps).toBe(1_000);
    expect(f!.evidence.threshold_flows_per_second).toBe(3_500);
    expect(f!.evidence.sources).toBe(100);
    expect(f!.related_ips).toHaveLength(20);
    expect(f!.related_ips.every((ip) => ip.startsWith('203.0.113.'))).toBe(true);
    expect(f!.evidence.protocols).toEqual([{ protocol: 'UDP', packets: 450_000, share: 1 }]);
    expect(f!.packets).toBe(450_000);
    expect(f!.flows).toBe(100);
    expect(near(f!.first_seen, T0 + 12 * S)).toBe(true);
    expect(near(f!.last_seen, T0 + 27 * S)).toBe(true);
    expect(f!.title).toContain('UDP flood toward 10.1.1.10 from 100 sources');
  });

  test('spoofed single-packet sources cross the flows-per-second threshold alone', () => {
    const f = findings.find((x) => x.dst_ip === '10.1.1.20');
    expect(f).toBeDefined();
    expect(f!.evidence.exceeded).toEqual(['flows']);
    expect(f!.evidence.peak_flows_per_second).toBe(4_000);
    expect(f!.evidence.peak_pps).toBe(4_000);
    expect(f!.evidence.sources).toBe(40_000);
    expect(f!.evidence.top_ports).toEqual([27_015]);
    expect(f!.severity).toBe('medium');
    expect(f!.flows).toBe(40_000);
    expect(near(f!.first_seen, T0 + 40 * S)).toBe(true);
    expect(near(f!.last_seen, T0 + 50 * S)).toBe(true);
  });

  test('a host override lowers the thresholds: an ICMP flood answered by echo replies', () => {
    const f = findings.find((x) => x.dst_ip === '10.1.2.5');
    expect(f).toBeDefined();
    expect(f!.evidence.threshold_pps).toBe(2_000);
    expect(f!.evidence.threshold_flows_per_second).toBe(100);
    expect(around(f!.evidence.peak_pps, 3_000)).toBe(true);
    expect(f!.evidence.exceeded).toEqual(['pps']);
    expect((f!.evidence.protocols as Array<{ protocol: string }>)[0]!.protocol).toBe('ICMP');
    expect(f!.evidence.sources).toBe(30);
    expect(f!.severity).toBe('medium');
    expect(near(f!.first_seen, T0 + 60 * S)).toBe(true);
    expect(near(f!.last_seen, T0 + 80 * S)).toBe(true);
  });

  test('internal hosts flooding an outside address: outbound, high', () => {
    const f = findings.find((x) => x.dst_ip === '192.0.2.99');
    expect(f).toBeDefined();
    expect(f!.severity).toBe('high');
    expect(f!.evidence.direction).toBe('outbound');
    expect(f!.evidence.internal_source_share).toBe(1);
    expect(f!.title).toMatch(/^Outbound TCP flood toward 192\.0\.2\.99 from 20 internal sources/);
    expect(around(f!.evidence.peak_pps, 1_500)).toBe(true);
    expect([...f!.related_ips].sort()).toEqual(
      Array.from({ length: 20 }, (_, i) => `10.5.0.${i + 1}`).sort(),
    );
  });

  test('a flood across two windows is one finding with the flows of both', () => {
    const list = findings.filter((x) => x.dst_ip === '10.1.4.4');
    expect(list).toHaveLength(1);
    const f = list[0]!;
    expect(f.windows).toBe(2);
    expect(f.flows).toBe(12_000);
    expect(f.evidence.peak_flows_per_second).toBe(600);
    expect(near(f.first_seen, T0 + 290 * S)).toBe(true);
    expect(near(f.last_seen, T0 + 310 * S)).toBe(true);
  });

  test('streams split by an active timeout are not new flows', () => {
    // The exporter did split them (several records per stream, cut by the active timeout)...
    expect(splitRecords.records).toBeGreaterThan(2 * 1_500);
    expect(splitRecords.timeouts).toBeGreaterThan(1_500);
    // ...and the host stays silent: no bucket has 100 new 5-tuples a second.
    expect(findings.find((f) => f.dst_ip === '10.1.2.8')).toBeUndefined();
  });

  test('long one-way streams, a flash crowd, a backup and a QUIC download stay silent', () => {
    expect(findings.map((f) => f.dst_ip).sort()).toEqual([
      '10.1.1.10',
      '10.1.1.20',
      '10.1.2.5',
      '10.1.4.4',
      '192.0.2.99',
    ]);
  });

  test('sampling: the flows threshold is divided by the rate, down to its floor', () => {
    expect(sampled).toHaveLength(1);
    const f = sampled[0]!;
    expect(f.dst_ip).toBe('10.7.0.1');
    expect(f.evidence.sampling_rate).toBe(100);
    // 3,500 / 100 = 35 flows/s, raised to the floor of 50; 60 observed. The unsampled host's 60 flows/s
    // stay under 3,500.
    expect(f.evidence.threshold_flows_per_second).toBe(50);
    expect(f.evidence.peak_flows_per_second).toBe(60);
    expect(f.evidence.exceeded).toEqual(['flows']);
    // Packets were scaled by the exporter's rate already: 600 records × 100, 6,000 pps.
    expect(f.packets).toBe(60_000);
    expect(f.evidence.peak_pps).toBe(6_000);
  });
});
