import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../../../test/support/detection.js';
import { ACK, PSH, TCP, TrafficBuilder } from '../../../../test/support/packets.js';
import type { Finding } from '../../../findings/model.js';

const S = 1_000_000;
const ID = 'brute-force';
// Backfill chunks are max(interval, lookback) = 30 minutes, aligned to multiples of it: start the
// traffic on such a boundary so that each scenario is judged in one chunk (an attack split across two
// chunks is reported by the second with only that chunk's flows as new: correct, but not what these
// assertions count).
const B = Math.ceil(trafficBase(180) / (1_800 * S)) * 1_800 * S;

let h: DetectionHarness;
let findings: Finding[];

async function resample(exporter: string, rate: number): Promise<void> {
  // See horizontal-sweep's test: own deduplication token; filter on the column, not the replaced alias.
  await h.store.client.command({
    query: `INSERT INTO flows SETTINGS insert_deduplication_token = 'resample-${rate}-${Date.now()}'
            SELECT * REPLACE (bytes * {rate:UInt32} AS bytes, packets * {rate:UInt32} AS packets,
              {rate:UInt32} AS sampling_rate, toIPv6('::ffff:192.0.2.99') AS exporter_address)
            FROM flows AS f WHERE f.exporter_address = toIPv6({e:String})`,
    query_params: { rate, e: `::ffff:${exporter}` },
  });
  await h.store.client.command({
    query: 'DELETE FROM flows WHERE exporter_address = toIPv6({e:String})',
    query_params: { e: `::ffff:${exporter}` },
  });
}

/** One failed SSH login: version and key exchange (about 1.3 kB up, 1.5 kB down), two password tries. */
function sshAttempt(
  b: TrafficBuilder,
  t: number,
  client: string,
  server: string,
  sport: number,
  jitter = 0,
): void {
  b.tcpSession({
    t,
    client,
    server,
    sport,
    dport: 22,
    exchanges: [
      { up: 1_300 + jitter, down: 1_500 },
      { up: 150, down: 60 },
      { up: 150, down: 60 },
    ],
  });
}

beforeAll(async () => {
  h = await DetectionHarness.open();
  const b = new TrafficBuilder();
  // Positive 1: an Internet host guesses SSH passwords on one server, 60 attempts in 10 minutes, then
  // logs in: a 50 kB session.
  for (let i = 0; i < 60; i++)
    sshAttempt(b, B + i * 10 * S, '203.0.113.9', '10.1.1.5', 40_000 + i, (i * 7) % 30);
  b.tcpSession({
    t: B + 610 * S,
    client: '203.0.113.9',
    server: '10.1.1.5',
    sport: 40_100,
    dport: 22,
    exchanges: [
      { up: 1_300, down: 1_500 },
      { up: 150, down: 60 },
      { up: 2_000, down: 50_000 },
    ],
    thinkUs: 5 * S,
  });
  // Positive 2: an internal host sprays RDP logins over 12 servers, 4 attempts each.
  for (let host = 0; host < 12; host++)
    for (let k = 0; k < 4; k++)
      b.tcpSession({
        t: B + 60 * S + host * 20 * S + k * 3 * S,
        client: '10.1.9.9',
        server: `10.1.5.${host + 1}`,
        sport: 50_000 + host * 10 + k,
        dport: 3389,
        exchanges: [
          { up: 400, down: 1_500 },
          { up: 1_200, down: 300 },
        ],
      });
  // Positive 3: FTP guessing over IPv6, 45 attempts of a few dozen bytes (banner, USER, PASS).
  for (let i = 0; i < 45; i++)
    b.tcpSession({
      t: B + 120 * S + i * 4 * S,
      client: '2001:db8::66',
      server: 'fd00::21',
      sport: 33_000 + i,
      dport: 21,
      exchanges: [
        { up: 0, down: 30 },
        { up: 12, down: 30 },
        { up: 12, down: 25 },
      ],
    });

  // Benign: an admin's three SSH sessions.
  for (let i = 0; i < 3; i++)
    b.tcpSession({
      t: B + 30 * S + i * 200 * S,
      client: '10.1.2.2',
      server: '10.1.1.5',
      sport: 45_000 + i,
      dport: 22,
      exchanges: [
        { up: 1_300, down: 1_500 },
        { up: 3_000, down: 40_000 },
      ],
      thinkUs: 20 * S,
    });
  // Benign: Ansible from a bastion, 15 hosts x 4 tasks, each a session moving a module (8-60 kB).
  for (let host = 0; host < 15; host++)
    for (let task = 0; task < 4; task++)
      b.tcpSession({
        t: B + 300 * S + task * 60 * S + host * S,
        client: '10.1.3.3',
        server: `10.1.6.${host + 1}`,
        sport: 35_000 + host * 10 + task,
        dport: 22,
        exchanges: [
          { up: 1_300, down: 1_500 },
          { up: 8_000 + ((host * 13 + task * 29) % 50) * 1_000, down: 2_000 + task * 500 },
        ],
        thinkUs: 2 * S,
      });
  // Benign: a health check logs in to MySQL about once a minute for 30 minutes (31 logins).
  for (let i = 0; i <= 30; i++)
    b.tcpSession({
      t: B + 5 * S + i * 58 * S,
      client: '10.1.4.4',
      server: '10.1.1.30',
      sport: 36_000 + i,
      dport: 3306,
      exchanges: [
        { up: 0, down: 90 },
        { up: 120, down: 11 },
        { up: 30, down: 60 },
      ],
    });
  // Benign: a SYN scanner hitting the SSH server 100 times (refused): a scan, not logins.
  for (let i = 0; i < 100; i++)
    b.synProbe(B + 200 * S + i * S, '203.0.113.77', '10.1.1.5', 47_000 + i, 22, 'rst');
  // Benign: a crawler grabbing FTP banners of 40 hosts, one connection each.
  for (let i = 0; i < 40; i++)
    b.tcpSession({
      t: B + 400 * S + i * S,
      client: '198.51.100.200',
      server: `10.1.7.${i + 1}`,
      sport: 37_000 + i,
      dport: 21,
      exchanges: [
        { up: 0, down: 30 },
        { up: 6, down: 20 },
      ],
    });
  // Benign: an SSH banner grabber, 50 connections to one server, sending only its version string.
  for (let i = 0; i < 50; i++)
    b.tcpSession({
      t: B + 500 * S + i * 2 * S,
      client: '198.51.100.201',
      server: '10.1.1.5',
      sport: 38_000 + i,
      dport: 22,
      exchanges: [{ up: 20, down: 40 }],
    });
  await h.load(b);

  // Sampled 1:10: what the exporter kept of two SSH guessing runs, one data packet per attempt: 6
  // attempts (above the floor of 5) and 4 (below).
  const s = new TrafficBuilder();
  for (const [src, n] of [
    ['198.51.100.90', 6],
    ['198.51.100.91', 4],
  ] as const)
    for (let i = 0; i < n; i++)
      s.packet({
        t: B + 900 * S + i * 20 * S,
        src,
        dst: '10.1.1.6',
        proto: TCP,
        sport: 48_000 + i,
        dport: 22,
        flags: ACK | PSH,
        payload: 300,
      });
  const sampled = await h.load(s, { exporter: '192.0.2.251' });
  await resample('192.0.2.251', 10);

  const { engine } = h.detection();
  await engine.backfill({ from: B / 1000, to: sampled.lastMs + 600_000, detectors: [ID] });
  findings = await h.findings(ID);
}, 120_000);

afterAll(async () => {
  await h?.close();
});

const near = (iso: string, us: number) => Math.abs(Date.parse(iso) - us / 1000);

describe('brute-force', () => {
  test('SSH guessing followed by a large session: T1110.001, high, the success in the evidence', () => {
    const f = findings.find((x) => x.src_ip === '203.0.113.9');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('10.1.1.5');
    expect(f!.technique_ids).toEqual(['T1110.001']);
    expect(f!.tactic_ids).toEqual(['TA0006']);
    expect(f!.severity).toBe('high');
    expect(f!.evidence.service).toBe('SSH');
    expect(f!.evidence.attempts).toBe(60);
    expect(f!.evidence.distinct_hosts).toBe(1);
    expect(f!.evidence.threshold_attempts).toBe(40);
    expect(f!.evidence.uniform_sizes).toBe(true);
    expect(f!.evidence.size_cv as number).toBeLessThan(0.05);
    expect(f!.evidence.mean_attempt_bytes as number).toBeGreaterThan(3_000);
    expect(f!.evidence.mean_attempt_bytes as number).toBeLessThan(4_290);
    expect(f!.evidence.likely_success).toBe(true);
    const sessions = f!.evidence.success_sessions as Array<{ dst: string; bytes: number; start: string }>;
    expect(sessions).toHaveLength(1);
    expect(sessions[0]!.dst).toBe('10.1.1.5');
    expect(sessions[0]!.bytes).toBeGreaterThan(50_000);
    expect(near(sessions[0]!.start, B + 610 * S)).toBeLessThan(1500);
    expect(f!.title).toMatch(
      /^SSH password guessing against 10\.1\.1\.5 by 203\.0\.113\.9: 60 attempts, then a \d+-byte session \(likely successful login\)$/,
    );
    // Both directions of 60 attempts and of the session.
    expect(f!.flows).toBe(122);
    expect(near(f!.first_seen, B)).toBeLessThan(1500);
    // The session: two 5-second pauses between its exchanges.
    expect(near(f!.last_seen, B + 620 * S)).toBeLessThan(1500);
  });

  test('RDP attempts over 12 hosts are spraying: T1110.003, no primary destination, the hosts related', () => {
    const f = findings.find((x) => x.src_ip === '10.1.9.9');
    expect(f).toBeDefined();
    expect(f!.technique_ids).toEqual(['T1110.003']);
    expect(f!.dst_ip).toBeNull();
    expect(f!.severity).toBe('medium');
    expect(f!.evidence.service).toBe('RDP');
    expect(f!.evidence.attempts).toBe(48);
    expect(f!.evidence.distinct_hosts).toBe(12);
    expect(f!.evidence.likely_success).toBe(false);
    expect(f!.evidence.attacker_internal).toBe(true);
    expect(f!.related_ips).toHaveLength(12);
    expect(f!.related_ips).toContain('10.1.5.12');
    expect(f!.title).toBe('RDP password spraying by 10.1.9.9: 48 attempts on 12 hosts');
  });

  test('FTP guessing with logins of a few dozen bytes, over IPv6', () => {
    const f = findings.find((x) => x.src_ip === '2001:db8::66');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('fd00::21');
    expect(f!.technique_ids).toEqual(['T1110.001']);
    expect(f!.severity).toBe('medium');
    expect(f!.evidence.service).toBe('FTP');
    expect(f!.evidence.attempts).toBe(45);
    expect(f!.evidence.ports).toEqual([21]);
  });

  test('sampled flows: the attempt threshold is divided by the rate, down to its floor', () => {
    const f = findings.find((x) => x.src_ip === '198.51.100.90');
    expect(f).toBeDefined();
    expect(f!.evidence.sampling_rate).toBe(10);
    expect(f!.evidence.threshold_attempts).toBe(5);
    expect(f!.evidence.attempts).toBe(6);
    expect(f!.bytes).toBe(6 * 340 * 10);
    expect(findings.find((x) => x.src_ip === '198.51.100.91')).toBeUndefined();
  });

  test('admin sessions, Ansible, a once-a-minute health check, scans and banner grabs stay silent', () => {
    expect(findings.map((f) => f.src_ip).sort()).toEqual([
      '10.1.9.9',
      '198.51.100.90',
      '2001:db8::66',
      '203.0.113.9',
    ]);
  });

  test('the health check is held back by the attempt count alone: at 30 it would be guessing', async () => {
    const { engine } = h.detection({ detectors: { [ID]: { params: { minAttempts: 30 } } } });
    await engine.backfill({ from: B / 1000, to: B / 1000 + 1_800_000, detectors: [ID] });
    const f = (await h.findings(ID)).find((x) => x.src_ip === '10.1.4.4');
    expect(f).toBeDefined();
    expect(f!.evidence.service).toBe('MySQL');
    expect(f!.evidence.attempts).toBe(31);
    expect(f!.evidence.threshold_attempts).toBe(30);
  });

  test('each look-alike is held back by its own guard: without them, Ansible, the crawler and the banner grabber fire', async () => {
    const loose = {
      sprayMinPerHost: 1,
      services: [
        { name: 'SSH', ports: [22], minClientBytes: 0, successBytes: 1_000_000 },
        { name: 'FTP', ports: [21], minClientBytes: 1, successBytes: 3_000 },
      ],
    };
    const { engine } = h.detection({ detectors: { [ID]: { params: loose } } });
    await engine.backfill({ from: B / 1000, to: B / 1000 + 1_800_000, detectors: [ID] });
    const all = await h.findings(ID);
    // Ansible's module transfers, once sessions are never too large for attempts.
    expect(all.find((x) => x.src_ip === '10.1.3.3')?.technique_ids).toEqual(['T1110.003']);
    // One FTP connection per host, once one per host is enough.
    expect(all.find((x) => x.src_ip === '198.51.100.200')?.evidence.distinct_hosts).toBe(40);
    // Version strings only, once no key exchange is needed.
    expect(all.find((x) => x.src_ip === '198.51.100.201')?.evidence.attempts).toBe(50);
    // The refused SYNs are never attempts, whatever the parameters.
    expect(all.find((x) => x.src_ip === '203.0.113.77')).toBeUndefined();
  });
});
