import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../../../test/support/detection.js';
import { ACK, SYN, TCP, TrafficBuilder } from '../../../../test/support/packets.js';
import type { Finding } from '../../../findings/model.js';

// Aligned to the backfill's 300 s chunks (and so to the 10 s buckets).
const T0 = Math.floor(trafficBase() / 300e6) * 300e6;
const S = 1_000_000;
const ID = 'syn-flood';

/** `count` times spread evenly over [from, from + durationUs), epoch µs. */
function spread(from: number, durationUs: number, count: number, phase = 0): Float64Array {
  const out = new Float64Array(count);
  const step = durationUs / count;
  for (let i = 0; i < count; i++) out[i] = from + phase * step + i * step;
  return out;
}

const near = (iso: string, us: number, toleranceMs = 1_500) =>
  Math.abs(Date.parse(iso) - us / 1000) < toleranceMs;

let h: DetectionHarness;
let findings: Finding[];
let sampled: Finding[];

beforeAll(async () => {
  h = await DetectionHarness.open();
  const b = new TrafficBuilder();

  // Positive at the defaults (5,000 SYN/s): 60,000 SYNs in 10 s (T0+10 s to T0+20 s) toward a web
  // server, half from 30,000 spoofed addresses sending one SYN each, half from 300 bots sending 100
  // SYNs each from a fixed port (the server answers those with SYN-ACKs). 200 real clients complete
  // their sessions meanwhile, so the SYN share stays just under 100 %.
  for (let i = 0; i < 30_000; i++) {
    b.packet({
      t: T0 + 10 * S + i * 333.33,
      src: `198.18.${Math.floor(i / 250)}.${(i % 250) + 1}`,
      dst: '10.1.1.40',
      proto: TCP,
      sport: 1_024 + ((i * 7) % 60_000),
      dport: i % 3 === 0 ? 80 : 443,
      flags: SYN,
    });
  }
  for (let bot = 0; bot < 300; bot++) {
    const src = `100.66.${Math.floor(bot / 250)}.${(bot % 250) + 1}`;
    const times = spread(T0 + 10 * S, 10 * S, 100, bot / 300);
    const dport = bot % 3 === 0 ? 80 : 443;
    b.packetTrain({ src, dst: '10.1.1.40', proto: TCP, sport: 20_000 + bot, dport, flags: SYN }, times);
    b.packetTrain(
      { src: '10.1.1.40', dst: src, proto: TCP, sport: dport, dport: 20_000 + bot, flags: SYN | ACK },
      times.map((t) => t + 200),
    );
  }
  for (let i = 0; i < 200; i++) {
    b.tcpSession({
      t: T0 + 10 * S + i * 45_000,
      client: `203.0.113.${(i % 250) + 1}`,
      server: '10.1.1.40',
      sport: 40_000 + i,
      dport: 443,
      exchanges: [{ up: 500, down: 6_000 }],
    });
  }

  // Look-alike at the defaults: one scanner probes 60,000 ports of a host in 6 s (6,000 SYN/s over
  // the 10 s bucket, 100 % SYN): a port scan, not a flood.
  for (let port = 1; port <= 60_000; port++)
    b.synProbe(T0 + 40 * S + port * 100, '198.51.100.66', '10.1.1.30', 55_000, port, 'rst');

  // Under a host override (200 SYN/s for 10.2.2.0/24):
  // look-alike: a busy server with 300 completed sessions a second and as many failed attempts
  // (single SYNs from distinct clients): 300 SYN/s from 3,000 sources, but ~11 % of its TCP packets.
  for (let i = 0; i < 3_000; i++) {
    b.tcpSession({
      t: T0 + 60 * S + i * 3_333,
      client: `100.70.${Math.floor(i / 250)}.${(i % 250) + 1}`,
      server: '10.2.2.10',
      sport: 30_000 + (i % 30_000),
      dport: 443,
      exchanges: [{ up: 600, down: 8_000 }],
    });
    b.packet({
      t: T0 + 60 * S + i * 3_333 + 1_000,
      src: `100.71.${Math.floor(i / 250)}.${(i % 250) + 1}`,
      dst: '10.2.2.10',
      proto: TCP,
      sport: 30_000 + (i % 30_000),
      dport: 443,
      flags: SYN,
    });
  }
  // look-alike: backscatter, 100 flooded servers' SYN-ACKs to an address spoofed in their floods.
  for (let s = 0; s < 100; s++) {
    for (const [k, t] of spread(T0 + 100 * S, 10 * S, 30, s / 100).entries()) {
      b.packet({
        t,
        src: `192.0.2.${s + 1}`,
        dst: '10.2.2.30',
        proto: TCP,
        sport: 80,
        dport: 1_024 + k,
        flags: SYN | ACK,
      });
    }
  }
  // positive: 50 sources send 60 SYNs each in 10 s (300 SYN/s, no spoofing: none sends one packet).
  for (let s = 0; s < 50; s++) {
    b.packetTrain(
      { src: `203.0.113.${100 + s}`, dst: '10.2.2.40', proto: TCP, sport: 33_000 + s, dport: 22, flags: SYN },
      spread(T0 + 130 * S, 10 * S, 60, s / 50),
    );
  }
  // Outbound, under an override for the target (500 SYN/s): 30 internal hosts send 200 SYNs each in
  // 10 s to one external address.
  for (let s = 0; s < 30; s++) {
    b.packetTrain(
      { src: `10.6.0.${s + 1}`, dst: '203.0.113.200', proto: TCP, sport: 44_000 + s, dport: 443, flags: SYN },
      spread(T0 + 160 * S, 10 * S, 200, s / 30),
    );
  }

  // IPv6, under an override for fd00:2::/64 (200 SYN/s): 40 sources send 100 SYNs each in 10 s.
  for (let s = 0; s < 40; s++) {
    b.packetTrain(
      {
        src: `2001:db8:77::${(s + 1).toString(16)}`,
        dst: 'fd00:2::10',
        proto: TCP,
        sport: 35_000 + s,
        dport: 443,
        flags: SYN,
      },
      spread(T0 + 190 * S, 10 * S, 100, s / 40),
    );
  }

  const loaded = await h.load(b, { maxFlows: 200_000 });
  const { engine } = h.detection({
    detectors: {
      [ID]: {
        params: {
          hostOverrides: [
            { cidr: '10.2.2.0/24', synPps: 200 },
            { cidr: '203.0.113.200/32', synPps: 500 },
            { cidr: 'fd00:2::/64', synPps: 200 },
          ],
        },
      },
    },
  });
  await engine.backfill({ from: loaded.firstMs - 60_000, to: loaded.lastMs + 600_000, detectors: [ID] });
  findings = await h.findings(ID);

  // Sampling: softflowd -r cannot sample, so these records are inserted as a 1:100 sampling exporter
  // sends them, 20 minutes later: 10 sources × 60 SYN records of 100 (scaled) packets in 10 s toward
  // each of two hosts, one exported at 1:100 and one unsampled. 6,000 SYN/s each; 10 sources seen.
  const base = T0 + 1_200 * S;
  const time = (us: number) => new Date(us / 1000).toISOString().replace('T', ' ').replace('Z', '');
  const rows: object[] = [];
  for (const [dst, rate] of [
    ['10.7.0.3', 100],
    ['10.7.0.4', 1],
  ] as const) {
    for (let src = 0; src < 10; src++) {
      for (let i = 0; i < 60; i++) {
        const t = base + 10 * S + i * 150_000 + src * 1_000;
        rows.push({
          time_received: time(base + 30 * S).slice(0, 19),
          flow_start: time(t),
          flow_end: time(t),
          exporter_address: '::ffff:192.0.2.251',
          src_addr: `::ffff:198.18.7.${src + 1}`,
          dst_addr: `::ffff:${dst}`,
          src_port: 1_024 + i,
          dst_port: 80,
          proto: 6,
          tcp_flags: SYN,
          bytes: 40 * 100,
          packets: 100,
          sampling_rate: rate,
        });
      }
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

describe(ID, () => {
  test('a spoofed SYN flood at the default thresholds: rate, share, sources, spoofing tell, ports', () => {
    const f = findings.find((x) => x.dst_ip === '10.1.1.40');
    expect(f).toBeDefined();
    expect(f!.technique_ids).toEqual(['T1498.001', 'T1499.001']);
    expect(f!.tactic_ids).toEqual(['TA0040']);
    expect(f!.severity).toBe('medium');
    expect(f!.src_ip).toBeNull();
    expect(f!.evidence.peak_syn_pps).toBe(6_000);
    expect(f!.evidence.threshold_syn_pps).toBe(5_000);
    expect(f!.evidence.threshold_syn_share).toBe(0.5);
    expect(f!.evidence.threshold_sources).toBe(20);
    expect(f!.evidence.syn_share).toBeGreaterThan(0.95);
    expect(f!.evidence.syn_share).toBeLessThan(1);
    expect(f!.evidence.sources).toBe(30_300);
    expect(f!.evidence.single_packet_sources).toBe(30_000);
    expect(f!.evidence.top_ports).toEqual([
      { port: 443, packets: 40_000 },
      { port: 80, packets: 20_000 },
    ]);
    expect(f!.evidence.syn_packets).toBe(60_000);
    expect(f!.packets).toBe(60_000);
    expect(f!.flows).toBe(30_300);
    expect(f!.related_ips).toHaveLength(20);
    // The bots (100 SYNs each) lead the sources.
    expect(f!.related_ips.every((ip) => ip.startsWith('100.66.'))).toBe(true);
    expect(near(f!.first_seen, T0 + 10 * S)).toBe(true);
    expect(near(f!.last_seen, T0 + 20 * S)).toBe(true);
    expect(f!.title).toMatch(
      /^SYN flood toward 10\.1\.1\.40 2 ports \(top 443\): 6k SYN\/s from 30300 sources/,
    );
  });

  test('a host override: 50 real sources, no single-packet ones', () => {
    const f = findings.find((x) => x.dst_ip === '10.2.2.40');
    expect(f).toBeDefined();
    expect(f!.evidence.threshold_syn_pps).toBe(200);
    expect(f!.evidence.sources).toBe(50);
    expect(f!.evidence.single_packet_sources).toBe(0);
    expect(f!.evidence.syn_share).toBe(1);
    expect(f!.evidence.top_ports).toEqual([{ port: 22, packets: 3_000 }]);
    expect(f!.severity).toBe('medium');
    expect(near(f!.first_seen, T0 + 130 * S)).toBe(true);
    expect(near(f!.last_seen, T0 + 140 * S)).toBe(true);
  });

  test('internal hosts SYN flooding an outside address: outbound, high', () => {
    const f = findings.find((x) => x.dst_ip === '203.0.113.200');
    expect(f).toBeDefined();
    expect(f!.severity).toBe('high');
    expect(f!.evidence.direction).toBe('outbound');
    expect(f!.title).toMatch(/^Outbound SYN flood toward 203\.0\.113\.200 port 443/);
    expect(f!.related_ips).toHaveLength(20);
    expect(f!.related_ips.every((ip) => ip.startsWith('10.6.0.'))).toBe(true);
  });

  test('IPv6: victim, sources and a v6 host override', () => {
    const f = findings.find((x) => x.dst_ip === 'fd00:2::10');
    expect(f).toBeDefined();
    expect(f!.evidence.threshold_syn_pps).toBe(200);
    expect(f!.evidence.peak_syn_pps).toBe(400);
    expect(f!.evidence.sources).toBe(40);
    expect(f!.related_ips.every((ip) => ip.startsWith('2001:db8:77::'))).toBe(true);
    expect(f!.title).toMatch(/^SYN flood toward fd00:2::10 port 443: 400 SYN\/s from 40 sources, 100 % SYN$/);
    expect(near(f!.first_seen, T0 + 190 * S)).toBe(true);
  });

  test('a port scan, a busy server with failed attempts and backscatter stay silent', () => {
    expect(findings.map((f) => f.dst_ip).sort()).toEqual([
      '10.1.1.40',
      '10.2.2.40',
      '203.0.113.200',
      'fd00:2::10',
    ]);
  });

  test('sampling: the sources threshold is divided by the rate, down to its floor', () => {
    expect(sampled.map((f) => f.dst_ip)).toEqual(['10.7.0.3']);
    const f = sampled[0]!;
    expect(f.evidence.sampling_rate).toBe(100);
    // 20 sources / 100, raised to the floor of 3; the unsampled host's 10 sources stay under 20.
    expect(f.evidence.threshold_sources).toBe(3);
    expect(f.evidence.sources).toBe(10);
    expect(f.evidence.peak_syn_pps).toBe(6_000);
    // One sampled packet stands for 100: no source counts as a single-packet (spoofed) one.
    expect(f.evidence.single_packet_sources).toBe(0);
  });
});
