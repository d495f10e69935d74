import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../../../test/support/detection.js';
import { TrafficBuilder } from '../../../../test/support/packets.js';
import type { Finding } from '../../../findings/model.js';

const ID = 'dns-tunnelling';
const T0 = trafficBase();
const S = 1_000_000;

let h: DetectionHarness;
let findings: Finding[];

/**
 * Rows straight into `flows`, with a deduplication token of their own: the embedded store keeps the
 * flow writer's last insert_deduplication_token as a session setting, and rows inserted under it into
 * the same partition would be dropped as a replay of that batch.
 */
async function insertFlows(rows: object[]): Promise<void> {
  await h.store.client.insert({
    table: 'flows',
    values: rows,
    format: 'JSONEachRow',
    clickhouse_settings: { insert_deduplication_token: `test-${randomUUID()}` },
  });
}

const at = (f: Finding) => ({ first: Date.parse(f.first_seen) * 1000, last: Date.parse(f.last_seen) * 1000 });

beforeAll(async () => {
  h = await DetectionHarness.open();
  const b = new TrafficBuilder();
  // Positive 1: an iodine-like tunnel, one fixed source port, 1500 requests of 220 bytes of payload in
  // 60 s to an Internet server, with 300-byte answers: rate, bytes and size all exceed.
  for (let i = 0; i < 1_500; i++)
    b.udpExchange(T0 + 60 * S + i * 40_000, '10.2.0.10', '198.51.100.53', 41_000, 53, 220, 300);
  // Positive 2: a slow tunnel (dnscat2-like), 400 requests over 4 minutes (100/min) with random source
  // ports and 180-byte names: only the request size gives it away.
  for (let i = 0; i < 400; i++)
    b.udpExchange(T0 + 10 * 60 * S + i * 600_000, '10.2.0.11', '203.0.113.53', 30_000 + i, 53, 180, 120);
  // Positive 3: DNS over TCP from an IPv6 client, 420 kB up in one connection: bytes only.
  b.tcpSession({
    t: T0 + 20 * 60 * S,
    client: 'fd00::10',
    server: '2001:db8::53',
    sport: 45_000,
    dport: 53,
    exchanges: Array.from({ length: 300 }, () => ({ up: 1_400, down: 100 })),
  });

  // Benign: the internal resolver forwards its clients' queries to an upstream resolver: 2000 small
  // requests a minute (its address is on the detector's source allowlist).
  for (let i = 0; i < 4_000; i++)
    b.udpExchange(T0 + 30 * 60 * S + i * 30_000, '10.0.0.53', '8.8.8.8', 20_000 + (i % 5_000), 53, 45, 90);
  // Benign: its clients, each a handful of queries to it (sanctioned), one of them many.
  for (let c = 1; c <= 20; c++)
    for (let i = 0; i < 30; i++)
      b.udpExchange(
        T0 + 30 * 60 * S + c * S + i * 2 * S,
        `10.3.0.${c}`,
        '10.0.0.53',
        50_000 + i,
        53,
        40,
        120,
      );
  // Benign: a mail server resolving 400 names a minute for 4 minutes directly (small requests).
  for (let i = 0; i < 1_600; i++)
    b.udpExchange(T0 + 40 * 60 * S + i * 150_000, '10.2.0.25', '8.8.4.4', 20_000 + i, 53, 42, 160);
  // Benign: an ordinary client, 60 queries in 5 minutes to a public resolver.
  for (let i = 0; i < 60; i++)
    b.udpExchange(T0 + 50 * 60 * S + i * 5 * S, '10.2.0.30', '1.1.1.1', 33_000 + i, 53, 35, 90);
  // Benign: DNS over TLS, a few kB.
  b.tcpSession({
    t: T0 + 55 * 60 * S,
    client: '10.2.0.31',
    server: '9.9.9.9',
    sport: 46_000,
    dport: 853,
    exchanges: Array.from({ length: 20 }, () => ({ up: 120, down: 400 })),
  });
  const loaded = await h.load(b);
  const { engine } = h.detection({
    detectors: {
      [ID]: { params: { sanctionedResolvers: ['10.0.0.53/32'] }, allowlist: { src: ['10.0.0.53/32'] } },
    },
  });
  await engine.backfill({ from: loaded.firstMs - 60_000, to: loaded.lastMs + 600_000, detectors: [ID] });
  findings = await h.findings(ID);
}, 120_000);

afterAll(async () => {
  await h?.close();
});

const bySrc = (src: string) => findings.find((f) => f.src_ip === src);

describe('dns-tunnelling', () => {
  test('a fast tunnel with large requests to an external resolver is high, with all three signals', () => {
    const f = bySrc('10.2.0.10');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('198.51.100.53');
    expect(f!.technique_ids).toEqual(['T1071.004', 'T1048.003']);
    expect(f!.tactic_ids).toEqual(['TA0010', 'TA0011']);
    expect(f!.severity).toBe('high');
    const e = f!.evidence;
    expect(e.signals).toEqual(['bytes out', 'large requests', 'request rate']);
    expect(e.requests).toBe(1_500);
    // 1500 requests over the 60 s span.
    expect(e.requests_per_minute as number).toBeGreaterThan(1_400);
    expect(e.requests_per_minute as number).toBeLessThan(1_600);
    // 220 bytes of payload + 8 (UDP) + 20 (IPv4).
    expect(e.avg_request_bytes).toBe(248);
    expect(e.bytes_out).toBe(1_500 * 248);
    expect(e.resolver_internal).toBe(false);
    expect((e.thresholds as Record<string, number>).requests_per_minute).toBe(1_000);
    expect(Math.abs(at(f!).first - (T0 + 60 * S))).toBeLessThan(2 * S);
    expect(Math.abs(at(f!).last - (T0 + 120 * S))).toBeLessThan(2 * S);
    expect(f!.title).toContain('198.51.100.53');
  });

  test('a slow tunnel is found by its request size alone (medium)', () => {
    const f = bySrc('10.2.0.11');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('203.0.113.53');
    expect(f!.severity).toBe('medium');
    expect(f!.evidence.signals).toEqual(['large requests']);
    expect(f!.evidence.requests).toBe(400);
    expect(f!.evidence.requests_per_minute as number).toBeLessThan(120);
    expect(f!.technique_ids).toEqual(['T1071.004', 'T1048.003']);
    expect(Math.abs(at(f!).first - (T0 + 10 * 60 * S))).toBeLessThan(2 * S);
  });

  test('DNS over TCP from IPv6 is judged on bytes per minute', () => {
    const f = bySrc('fd00::10');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('2001:db8::53');
    expect(f!.evidence.signals).toEqual(['bytes out']);
    expect(f!.evidence.requests).toBe(0);
    expect(f!.evidence.protocols).toEqual([6]);
    expect(f!.evidence.bytes_out as number).toBeGreaterThan(420_000);
    expect(f!.severity).toBe('medium');
  });

  test('forwarder upstream traffic, sanctioned clients, a mail server, a normal client and DoT stay silent', () => {
    expect(findings.map((f) => f.src_ip).sort()).toEqual(['10.2.0.10', '10.2.0.11', 'fd00::10']);
  });

  test('the forwarder is judged like any client when it is not allowlisted (rate signal only)', async () => {
    const from = T0 / 1000;
    const to = (T0 + 70 * 60 * S) / 1000;
    const a = h.detection({ detectors: { [ID]: { params: { sanctionedResolvers: ['10.0.0.53/32'] } } } });
    await a.engine.backfill({ from, to, detectors: [ID], forward: false });
    const forwarder = (await h.findings(ID)).find((f) => f.src_ip === '10.0.0.53');
    expect(forwarder).toBeDefined();
    expect(forwarder!.dst_ip).toBe('8.8.8.8');
    expect(forwarder!.evidence.signals).toEqual(['request rate']);
    expect(forwarder!.technique_ids).toEqual(['T1071.004']);
  });
});

describe('dns-tunnelling sampling', () => {
  test('1:100 sampled biflow records: packets and bytes are already scaled, the thresholds are not divided', async () => {
    // Rows inserted directly (softflowd -r cannot sample): 15 sampled request packets of 230 bytes in
    // 30 s stand for 1500 requests at 1:100.
    const t0 = T0 + 90 * 60 * S;
    const ms = (us: number) => new Date(us / 1000).toISOString().replace('T', ' ').replace('Z', '');
    await insertFlows([
      {
        time_received: ms(t0 + 40 * S).slice(0, 19),
        flow_start: ms(t0),
        flow_end: ms(t0 + 30 * S),
        exporter_address: '::ffff:192.0.2.251',
        src_addr: '::ffff:10.9.0.7',
        dst_addr: '::ffff:198.51.100.153',
        src_port: 41_000,
        dst_port: 53,
        proto: 17,
        bytes: 1_500 * 230,
        packets: 1_500,
        // A biflow record (RFC 5103): the answers travel in the reverse counters.
        reverse_bytes: 1_500 * 400,
        reverse_packets: 1_500,
        sampling_rate: 100,
      },
    ]);
    const { engine } = h.detection();
    await engine.backfill({ from: t0 / 1000, to: (t0 + 300 * S) / 1000, detectors: [ID] });
    const f = (await h.findings(ID)).find((x) => x.src_ip === '10.9.0.7');
    expect(f).toBeDefined();
    expect(f!.evidence.requests).toBe(1_500);
    expect(f!.evidence.bytes_in).toBe(600_000);
    expect(f!.evidence.avg_response_bytes).toBe(400);
    expect(f!.evidence.sampling_rate).toBe(100);
    expect(f!.evidence.signals).toEqual(['bytes out', 'large requests', 'request rate']);
  });
});
