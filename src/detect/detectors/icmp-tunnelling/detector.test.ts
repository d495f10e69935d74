import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../../../test/support/detection.js';
import { ICMP, TrafficBuilder } from '../../../../test/support/packets.js';
import type { Finding } from '../../../findings/model.js';
import { queryRows } from '../../../storage/clickhouse.js';

const T0 = trafficBase(150);
const S = 1_000_000;
const MIN = 60 * S;

let h: DetectionHarness;
let findings: Finding[];

const near = (iso: string, us: number, toleranceMs = 2_000): boolean =>
  Math.abs(Date.parse(iso) - us / 1000) < toleranceMs;

beforeAll(async () => {
  h = await DetectionHarness.open();
  const b = new TrafficBuilder();
  // Positive: a tunnel; 300 echo requests with 1000-byte payloads in 10 minutes, answered by replies
  // that carry the server's own data (1400 bytes), not the request's.
  for (let i = 0; i < 300; i++) {
    const t = T0 + i * 2 * S;
    b.packet({
      t,
      src: '10.4.0.5',
      dst: '203.0.113.30',
      proto: ICMP,
      icmpType: 8,
      sport: 77,
      dport: i,
      payload: 1_000,
    });
    b.packet({
      t: t + 20_000,
      src: '203.0.113.30',
      dst: '10.4.0.5',
      proto: ICMP,
      icmpType: 0,
      sport: 77,
      dport: i,
      payload: 1_400,
    });
  }
  // Positive: ICMPv6 echo with 600-byte payloads, mirrored (a one-way covert channel), 200 requests.
  for (let i = 0; i < 200; i++) b.echo(T0 + 30 * S + i * 3 * S, 'fd00::7', '2001:db8::30', 9, i, 600);
  // Positive: small packets (ping -i 0.1 for 50 minutes): volume alone, 7.5 MB both ways.
  for (let i = 0; i < 30_000; i++)
    b.echo(T0 + 60 * S + i * 100_000, '10.4.0.6', '198.51.100.40', 5, i & 0xffff, 97);
  // Look-alike: ordinary ping once a second for 10 minutes.
  for (let i = 0; i < 600; i++) b.echo(T0 + 2 * MIN + i * S, '10.4.0.7', '198.51.100.53', 1, i, 56);
  // Look-alike: a path MTU probe, a few large packets.
  for (let i = 0; i < 5; i++) b.echo(T0 + 3 * MIN + i * S, '10.4.0.8', '203.0.113.31', 2, i, 1_472 - i * 8);
  // Look-alike: a monitoring system pinging 100 external hosts every minute for an hour.
  for (let m = 0; m < 60; m++) {
    for (let k = 0; k < 100; k++) b.echo(T0 + m * MIN + k * 50_000, '10.4.0.9', `192.0.2.${k + 1}`, 3, m, 56);
  }
  // Look-alike: an Internet host sends large pings to one of ours (not our host tunnelling out).
  for (let i = 0; i < 100; i++) b.echo(T0 + 4 * MIN + i * S, '198.51.100.66', '10.4.0.10', 4, i, 1_200);
  await h.load(b);

  // Sampling: the tunnel as a 1:10 sampled export reports it, a tenth of the packets sampled and the
  // counters already multiplied by the rate: the same numbers, the thresholds applied as they are.
  const tunnel = await queryRows<Record<string, unknown>>(
    h.store,
    `SELECT * FROM flows WHERE src_addr = toIPv6('::ffff:10.4.0.5') OR dst_addr = toIPv6('::ffff:10.4.0.5')`,
  );
  const moved = (a: unknown): unknown => (a === '::ffff:10.4.0.5' ? '::ffff:10.4.0.55' : a);
  await h.store.client.insert({
    table: 'flows',
    format: 'JSONEachRow',
    // Our own deduplication token: the embedded session still holds the one of the importer's last insert.
    clickhouse_settings: { insert_deduplication_token: 'icmp-sampled' },
    values: tunnel.map((r) => ({
      ...r,
      src_addr: moved(r.src_addr),
      dst_addr: moved(r.dst_addr),
      packets: Math.round(Number(r.packets) / 10) * 10,
      bytes: Math.round(Number(r.bytes) / 10) * 10,
      sampling_rate: 10,
    })),
  });

  const { engine } = h.detection();
  await engine.backfill({
    from: T0 / 1000 - 60_000,
    to: T0 / 1000 + 3_600_000 + 600_000,
    detectors: ['icmp-tunnelling'],
  });
  findings = await h.findings('icmp-tunnelling');
}, 300_000);

afterAll(async () => {
  await h?.close();
});

describe('icmp-tunnelling', () => {
  test('large echo requests answered with other data: high, T1095 and T1572, with both directions', () => {
    const f = findings.find((x) => x.src_ip === '10.4.0.5');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('203.0.113.30');
    expect(f!.technique_ids).toEqual(['T1095', 'T1572']);
    expect(f!.tactic_ids).toEqual(['TA0011']);
    expect(f!.severity).toBe('high');
    const e = f!.evidence;
    expect(e.protocol).toBe('ICMP');
    expect(e.echo_requests).toBe(300);
    expect(e.echo_replies).toBe(300);
    expect(e.mean_request_bytes).toBe(1_028);
    expect(e.mean_reply_bytes).toBe(1_428);
    expect(e.replies_mirror_requests).toBe(false);
    expect(e.reason).toBe('large-payload');
    expect(e.threshold_mean_bytes).toBe(256);
    expect(e.threshold_packets).toBe(50);
    expect(near(f!.first_seen, T0)).toBe(true);
    expect(near(f!.last_seen, T0 + 299 * 2 * S + 20_000)).toBe(true);
    expect(f!.packets).toBe(600);
  });

  test('mirrored large ICMPv6 echoes: medium, T1095 only', () => {
    const f = findings.find((x) => x.src_ip === 'fd00::7');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('2001:db8::30');
    expect(f!.technique_ids).toEqual(['T1095']);
    expect(f!.severity).toBe('medium');
    expect(f!.evidence.protocol).toBe('ICMPv6');
    expect(f!.evidence.mean_request_bytes).toBe(648);
    expect(f!.evidence.replies_mirror_requests).toBe(true);
  });

  test('small packets in high volume are reported for their volume', () => {
    const f = findings.find((x) => x.src_ip === '10.4.0.6');
    expect(f).toBeDefined();
    expect(f!.evidence.reason).toBe('volume');
    expect(f!.evidence.echo_requests).toBe(30_000);
    expect(Number(f!.evidence.echo_request_bytes) + Number(f!.evidence.echo_reply_bytes)).toBe(
      2 * 30_000 * 125,
    );
    expect(f!.evidence.threshold_volume_bytes).toBe(5_000_000);
  });

  test('a 1:10 sampled export of the tunnel is judged on its scaled counters', () => {
    const f = findings.find((x) => x.src_ip === '10.4.0.55');
    expect(f).toBeDefined();
    expect(f!.evidence.sampling_rate).toBe(10);
    expect(f!.evidence.echo_requests).toBe(300);
    expect(f!.severity).toBe('high');
  });

  test('ordinary ping, an MTU probe, a monitoring system and inbound large pings stay silent', () => {
    expect(findings.map((f) => f.src_ip).sort()).toEqual(['10.4.0.5', '10.4.0.55', '10.4.0.6', 'fd00::7']);
  });
});
