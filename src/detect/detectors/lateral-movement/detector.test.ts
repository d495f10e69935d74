import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../../../test/support/detection.js';
import { ACK, PSH, TCP, TrafficBuilder } from '../../../../test/support/packets.js';
import type { Finding } from '../../../findings/model.js';

const S = 1_000_000;
const DAY = 86_400 * S;
const ID = 'lateral-movement';
// Backfill chunks are an hour (the lookback), aligned to multiples of it: start on such a boundary so
// that each scenario is judged in one chunk.
const B = Math.ceil(trafficBase(240) / (3_600 * S)) * 3_600 * S;

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

/** A backup server's nightly round: SMB to 20 hosts, pulling 200 kB from each. */
function backupRound(b: TrafficBuilder, t: number, hosts: number, first = 1): void {
  for (let i = 0; i < hosts; i++)
    b.tcpSession({
      t: t + i * 5 * S,
      client: '10.1.0.20',
      server: `10.2.8.${first + i}`,
      sport: 40_000 + ((t / S + i) % 20_000),
      dport: 445,
      exchanges: [
        { up: 600, down: 600 },
        { up: 1_000, down: 200_000 },
      ],
      mss: 8_000,
    });
}

beforeAll(async () => {
  h = await DetectionHarness.open();
  // The baseline, two days earlier: the backup server's round over 20 hosts.
  const before = new TrafficBuilder();
  backupRound(before, B - 2 * DAY, 20);
  await h.load(before);

  const b = new TrafficBuilder();
  // Positive 1: a compromised workstation reaches SMB on 12 hosts in 10 minutes and copies a 400 kB
  // service binary to 4 of them (PsExec-style), the rest is share browsing.
  for (let i = 0; i < 12; i++)
    b.tcpSession({
      t: B + 60 * S + i * 50 * S,
      client: '10.1.1.66',
      server: `10.2.1.${i + 1}`,
      sport: 49_700 + i,
      dport: 445,
      exchanges: [
        { up: 600, down: 600 },
        { up: i < 4 ? 400_000 : 3_000, down: 2_000 },
      ],
      mss: 8_000,
    });
  // Positive 2: SSH sessions from an IPv6 host to 10 others.
  for (let i = 0; i < 10; i++)
    b.tcpSession({
      t: B + 120 * S + i * 30 * S,
      client: 'fd00::66',
      server: `fd00::2:${i + 1}`,
      sport: 51_000 + i,
      dport: 22,
      exchanges: [
        { up: 1_300, down: 1_500 },
        { up: 2_000, down: 20_000 },
      ],
    });
  // Benign: 30 clients use the file server / domain controller (fan-in).
  for (let i = 0; i < 30; i++)
    b.tcpSession({
      t: B + 30 * S + i * 10 * S,
      client: `10.3.0.${i + 1}`,
      server: '10.1.0.10',
      sport: 52_000 + i,
      dport: 445,
      exchanges: [{ up: 2_000, down: 30_000 }],
      mss: 8_000,
    });
  // Benign: the backup server's round again, plus 4 machines added since (4 new edges: below 10).
  backupRound(b, B + 200 * S, 20);
  backupRound(b, B + 400 * S, 4, 21);
  // Benign: one admin RDP session.
  b.tcpSession({
    t: B + 100 * S,
    client: '10.1.4.4',
    server: '10.2.4.4',
    sport: 53_000,
    dport: 3389,
    exchanges: Array.from({ length: 20 }, () => ({ up: 300, down: 8_000 })),
    thinkUs: 5 * S,
  });
  // Benign: a worm's SYNs to SMB on 40 hosts, refused: a sweep (horizontal-sweep), not movement.
  for (let i = 0; i < 40; i++)
    b.synProbe(B + 500 * S + i * 100_000, '10.1.5.5', `10.2.5.${i + 1}`, 54_000 + i, 445, 'rst');
  // Benign: 15 bare connects to RDP, reset at once (no session).
  for (let i = 0; i < 15; i++)
    b.tcpSession({
      t: B + 600 * S + i * S,
      client: '10.1.6.6',
      server: `10.2.6.${i + 1}`,
      sport: 55_000 + i,
      dport: 3389,
      close: 'rst',
    });
  await h.load(b);

  // Sampled 1:10: one client packet of WinRM sessions to 4 hosts (above the floor of 3) and to 2.
  const s = new TrafficBuilder();
  for (const [src, n] of [
    ['10.1.7.7', 4],
    ['10.1.7.8', 2],
  ] as const)
    for (let i = 0; i < n; i++)
      s.packet({
        t: B + 900 * S + i * 10 * S,
        src,
        dst: `10.2.7.${i + 1}`,
        proto: TCP,
        sport: 56_000 + i,
        dport: 5985,
        flags: ACK | PSH,
        payload: 500,
      });
  const sampled = await h.load(s, { exporter: '192.0.2.251' });
  await resample('192.0.2.251', 10);

  const { engine } = h.detection();
  await engine.backfill({
    from: B / 1000,
    to: Math.max(sampled.lastMs, B / 1000 + 1_200_000) + 60_000,
    detectors: [ID],
  });
  findings = await h.findings(ID);
}, 120_000);

afterAll(async () => {
  await h?.close();
});

const near = (iso: string, us: number) => Math.abs(Date.parse(iso) - us / 1000);

describe('lateral-movement', () => {
  test('SMB fan-out to 12 new hosts with tool-sized uploads to 4: T1021.002 and T1570, high', () => {
    const f = findings.find((x) => x.src_ip === '10.1.1.66');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBeNull();
    expect(f!.technique_ids).toEqual(['T1021.002', 'T1570']);
    expect(f!.tactic_ids).toEqual(['TA0008']);
    expect(f!.severity).toBe('high');
    expect(f!.evidence.new_hosts).toBe(12);
    expect(f!.evidence.per_service).toEqual([{ service: 'SMB', new_hosts: 12 }]);
    const transfers = f!.evidence.transfers as Array<{ dst: string; bytes: number }>;
    expect(transfers.map((t) => t.dst).sort()).toEqual(['10.2.1.1', '10.2.1.2', '10.2.1.3', '10.2.1.4']);
    expect(transfers.every((t) => t.bytes > 400_000)).toBe(true);
    expect(f!.evidence.threshold_hosts).toBe(10);
    expect(f!.evidence.baseline_days).toBe(7);
    expect(f!.evidence.known_edges).toBe(0);
    expect(f!.related_ips).toHaveLength(12);
    // Both directions of 12 connections.
    expect(f!.flows).toBe(24);
    expect(near(f!.first_seen, B + 60 * S)).toBeLessThan(1500);
    expect(near(f!.last_seen, B + 60 * S + 11 * 50 * S)).toBeLessThan(1500);
    expect(f!.title).toBe(
      'Lateral movement from 10.1.1.66: SMB to 12 new internal hosts, files of tool size copied to 4',
    );
  });

  test('SSH fan-out over IPv6 maps to T1021.004 at medium severity', () => {
    const f = findings.find((x) => x.src_ip === 'fd00::66');
    expect(f).toBeDefined();
    expect(f!.technique_ids).toEqual(['T1021.004']);
    expect(f!.severity).toBe('medium');
    expect(f!.evidence.new_hosts).toBe(10);
    expect(f!.evidence.transfers).toEqual([]);
  });

  test('sampled flows: the host threshold is divided by the rate, down to its floor', () => {
    const f = findings.find((x) => x.src_ip === '10.1.7.7');
    expect(f).toBeDefined();
    expect(f!.technique_ids).toEqual(['T1021.006']);
    expect(f!.evidence.sampling_rate).toBe(10);
    expect(f!.evidence.threshold_hosts).toBe(3);
    expect(f!.evidence.new_hosts).toBe(4);
    expect(f!.bytes).toBe(4 * 540 * 10);
    expect(findings.find((x) => x.src_ip === '10.1.7.8')).toBeUndefined();
  });

  test('fan-in, the backup server in its baseline, one admin session, SYN sweeps and bare connects stay silent', () => {
    expect(findings.map((f) => f.src_ip).sort()).toEqual(['10.1.1.66', '10.1.7.7', 'fd00::66']);
  });

  test('with its baseline, the backup server has 20 known edges and 4 new ones', async () => {
    const { engine } = h.detection({
      detectors: { [ID]: { params: { minNewHosts: 4, minNewHostsSampled: 2 } } },
    });
    await engine.backfill({ from: B / 1000, to: B / 1000 + 1_200_000, detectors: [ID] });
    const f = (await h.findings(ID)).find((x) => x.src_ip === '10.1.0.20' && x.evidence.baseline_days === 7);
    expect(f).toBeDefined();
    expect(f!.evidence.new_hosts).toBe(4);
    expect(f!.evidence.known_edges).toBe(20);
    expect((f!.evidence.hosts_sample as string[]).sort()).toEqual([
      '10.2.8.21',
      '10.2.8.22',
      '10.2.8.23',
      '10.2.8.24',
    ]);
  });

  // After the test above: the same finding, extended (its evidence keeps the larger host count).
  test('the backup server is held back by its baseline alone: without one, its 24 hosts are all new', async () => {
    const { engine } = h.detection({ detectors: { [ID]: { params: { baselineDays: 0 } } } });
    await engine.backfill({ from: B / 1000, to: B / 1000 + 1_200_000, detectors: [ID] });
    const f = (await h.findings(ID)).find((x) => x.src_ip === '10.1.0.20');
    expect(f).toBeDefined();
    expect(f!.evidence.new_hosts).toBe(24);
    expect(f!.evidence.known_edges).toBe(0);
  });
});
