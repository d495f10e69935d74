import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../../../test/support/detection.js';
import { ACK, PSH, SYN, TCP, TrafficBuilder } from '../../../../test/support/packets.js';
import type { Finding } from '../../../findings/model.js';
import { queryRows } from '../../../storage/clickhouse.js';

const S = 1_000_000;
const ID = 'exposed-remote-service';
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

/**
 * Splits every record one exporter sent into two, as an exporter's active timeout does: the first half
 * exported at its end, the second without the SYN it began with (softflowd -r does not split long
 * flows itself: its expiry runs on the wall clock, and a pcap is read in well under a second).
 */
async function splitInTwo(exporter: string): Promise<void> {
  const mid = `fromUnixTimestamp64Milli(intDiv(toUnixTimestamp64Milli(f.flow_start) + toUnixTimestamp64Milli(f.flow_end), 2), 'UTC')`;
  const moved = `toIPv6('::ffff:192.0.2.250') AS exporter_address`;
  await h.store.client.command({
    query: `INSERT INTO flows SETTINGS insert_deduplication_token = 'split-${Date.now()}'
            SELECT * REPLACE (${mid} AS flow_end, toDateTime(${mid}, 'UTC') AS time_received,
                              intDiv(f.bytes, 2) AS bytes, intDiv(f.packets, 2) AS packets, toUInt8(2) AS end_reason, ${moved})
            FROM flows AS f WHERE f.exporter_address = toIPv6({e:String})
            UNION ALL
            SELECT * REPLACE (${mid} AS flow_start, f.bytes - intDiv(f.bytes, 2) AS bytes,
                              f.packets - intDiv(f.packets, 2) AS packets, bitAnd(f.tcp_flags, 0xFFFD) AS tcp_flags, ${moved})
            FROM flows AS f WHERE f.exporter_address = toIPv6({e:String})`,
    query_params: { e: `::ffff:${exporter}` },
  });
  await h.store.client.command({
    query: 'DELETE FROM flows WHERE exporter_address = toIPv6({e:String})',
    query_params: { e: `::ffff:${exporter}` },
  });
}

/** An interactive session: `minutes` of 20-second exchanges (keystrokes up, screen updates down). */
function interactive(
  b: TrafficBuilder,
  t: number,
  client: string,
  server: string,
  sport: number,
  dport: number,
  minutes: number,
): void {
  b.tcpSession({
    t,
    client,
    server,
    sport,
    dport,
    exchanges: Array.from({ length: minutes * 3 }, () => ({ up: 200, down: 3_000 })),
    thinkUs: 20 * S,
  });
}

beforeAll(async () => {
  h = await DetectionHarness.open();
  const b = new TrafficBuilder();
  // Positive 1: RDP on 10.1.1.50 from two Internet hosts: a 12-minute session (split by the exporter's
  // active timeout, below) and a short one.
  const long = new TrafficBuilder();
  interactive(long, B + 60 * S, '198.51.100.4', '10.1.1.50', 50_001, 3389, 12);
  await h.load(long, { exporter: '192.0.2.252' });
  await splitInTwo('192.0.2.252');
  b.tcpSession({
    t: B + 100 * S,
    client: '203.0.113.20',
    server: '10.1.1.50',
    sport: 50_002,
    dport: 3389,
    exchanges: [
      { up: 400, down: 1_500 },
      { up: 1_200, down: 3_000 },
    ],
  });
  // Positive 2: SMB over IPv6 from the Internet.
  b.tcpSession({
    t: B + 200 * S,
    client: '2001:db8::99',
    server: 'fd00::45',
    sport: 50_003,
    dport: 445,
    exchanges: [
      { up: 300, down: 300 },
      { up: 2_000, down: 20_000 },
    ],
  });
  // Positive 3: SSH, and Telnet, from the Internet.
  interactive(b, B + 300 * S, '203.0.113.21', '10.1.1.22', 50_004, 22, 2);
  interactive(b, B + 320 * S, '203.0.113.23', '10.1.1.23', 50_005, 23, 1);

  // Benign: RDP between internal hosts.
  interactive(b, B + 60 * S, '10.1.2.3', '10.1.1.50', 50_010, 3389, 5);
  // Benign: SSH from inside to the Internet.
  interactive(b, B + 60 * S, '10.1.3.4', '203.0.113.30', 50_011, 22, 5);
  // Benign: an Internet scanner's SYNs to RDP on 50 hosts: refused, unanswered, or half-open.
  for (let i = 0; i < 50; i++) {
    const answer = i % 3 === 0 ? 'rst' : i % 3 === 1 ? 'none' : 'synack';
    b.synProbe(B + 400 * S + i * 100_000, '198.51.100.66', `10.1.4.${i + 1}`, 51_000 + i, 3389, answer);
  }
  // Benign: a connect scan: the handshake completes and is reset, no data.
  for (let i = 0; i < 10; i++)
    b.tcpSession({
      t: B + 450 * S + i * S,
      client: '198.51.100.67',
      server: `10.1.4.${i + 1}`,
      sport: 52_000 + i,
      dport: 5900,
      close: 'rst',
    });
  // Benign: an SSH banner grab (the version strings, then close).
  b.tcpSession({
    t: B + 460 * S,
    client: '198.51.100.68',
    server: '10.1.1.22',
    sport: 52_100,
    dport: 22,
    exchanges: [{ up: 20, down: 40 }],
  });
  await h.load(b);

  // Sampled 1:10: one client packet of an RDP session to 10.1.1.51 (reported), one SYN of a probe to
  // 10.1.1.52 (not).
  const s = new TrafficBuilder();
  s.packet({
    t: B + 600 * S,
    src: '198.51.100.60',
    dst: '10.1.1.51',
    proto: TCP,
    sport: 53_000,
    dport: 3389,
    flags: ACK | PSH,
    payload: 200,
  });
  s.packet({
    t: B + 600 * S,
    src: '198.51.100.61',
    dst: '10.1.1.52',
    proto: TCP,
    sport: 53_001,
    dport: 3389,
    flags: SYN,
    payload: 0,
  });
  const sampled = await h.load(s, { exporter: '192.0.2.251' });
  await resample('192.0.2.251', 10);

  const { engine } = h.detection();
  await engine.backfill({
    from: B / 1000,
    to: Math.max(sampled.lastMs, B / 1000 + 1_500_000) + 60_000,
    detectors: [ID],
  });
  findings = await h.findings(ID);
}, 120_000);

afterAll(async () => {
  await h?.close();
});

const near = (iso: string, us: number) => Math.abs(Date.parse(iso) - us / 1000);

describe('exposed-remote-service', () => {
  test('RDP reached from two Internet hosts is one finding per server, with both sources and every record', async () => {
    const f = findings.find((x) => x.dst_ip === '10.1.1.50');
    expect(f).toBeDefined();
    expect(f!.src_ip).toBe('198.51.100.4');
    expect(f!.related_ips).toEqual(['203.0.113.20']);
    expect(f!.technique_ids).toEqual(['T1133', 'T1021.001']);
    expect(f!.tactic_ids).toEqual(['TA0001', 'TA0003', 'TA0008']);
    expect(f!.severity).toBe('medium');
    expect(f!.evidence.service).toBe('RDP');
    expect(f!.evidence.distinct_sources).toBe(2);
    expect(f!.evidence.connections).toBe(2);
    expect(f!.evidence.longest_connection_seconds as number).toBeGreaterThan(700);
    expect(f!.evidence.bytes_from_server as number).toBeGreaterThan(36 * 3_000);
    // The long session arrived as several active-timeout records per direction; all are counted once.
    const [stored] = await queryRows<{ n: number }>(
      h.store,
      `SELECT count() AS n FROM flows WHERE (dst_port = 3389 AND dst_addr = toIPv6('::ffff:10.1.1.50') OR src_port = 3389 AND src_addr = toIPv6('::ffff:10.1.1.50'))
         AND (src_addr IN (toIPv6('::ffff:198.51.100.4'), toIPv6('::ffff:203.0.113.20')) OR dst_addr IN (toIPv6('::ffff:198.51.100.4'), toIPv6('::ffff:203.0.113.20')))`,
    );
    expect(stored!.n).toBe(6);
    expect(f!.flows).toBe(stored!.n);
    expect(near(f!.first_seen, B + 60 * S)).toBeLessThan(1500);
    expect(near(f!.last_seen, B + 60 * S + 35 * 20 * S)).toBeLessThan(5_000);
    expect(f!.title).toBe(
      'RDP on 10.1.1.50 reached from the Internet: 2 connections from 2 sources (198.51.100.4, 203.0.113.20)',
    );
  });

  test('SMB over IPv6 and Telnet are high, SSH low; each carries its own technique', () => {
    const smb = findings.find((x) => x.dst_ip === 'fd00::45');
    expect(smb?.severity).toBe('high');
    expect(smb?.technique_ids).toEqual(['T1133', 'T1021.002']);
    expect(smb?.src_ip).toBe('2001:db8::99');
    const telnet = findings.find((x) => x.dst_ip === '10.1.1.23');
    expect(telnet?.severity).toBe('high');
    expect(telnet?.technique_ids).toEqual(['T1133']);
    const ssh = findings.find((x) => x.dst_ip === '10.1.1.22');
    expect(ssh?.severity).toBe('low');
    expect(ssh?.technique_ids).toEqual(['T1133', 'T1021.004']);
    // The banner grab to the same server is not one of its connections.
    expect(ssh?.evidence.connections).toBe(1);
    expect(ssh?.src_ip).toBe('203.0.113.21');
  });

  test('sampled flows: a client packet with ACK suffices; a sampled SYN does not', () => {
    const f = findings.find((x) => x.dst_ip === '10.1.1.51');
    expect(f).toBeDefined();
    expect(f!.evidence.sampling_rate).toBe(10);
    expect(f!.bytes).toBe(2_400);
    expect(f!.confidence).toBe(0.7);
    expect(findings.find((x) => x.dst_ip === '10.1.1.52')).toBeUndefined();
  });

  test('internal RDP, outbound SSH, refused and half-open probes, connect scans and banner grabs stay silent', () => {
    expect(findings.map((f) => f.dst_ip).sort()).toEqual([
      '10.1.1.22',
      '10.1.1.23',
      '10.1.1.50',
      '10.1.1.51',
      'fd00::45',
    ]);
  });

  test('the connect scan and the banner grab are held back by minBytes alone', async () => {
    const { engine } = h.detection({ detectors: { [ID]: { params: { minBytes: 100 } } } });
    await engine.backfill({ from: B / 1000, to: B / 1000 + 1_500_000, detectors: [ID] });
    const all = await h.findings(ID);
    expect(all.filter((x) => x.evidence.service === 'VNC').map((x) => x.src_ip)).toHaveLength(10);
    expect(all.find((x) => x.dst_ip === '10.1.1.22')?.evidence.distinct_sources).toBe(2);
    // The probes never completed a handshake: silent whatever the byte floor.
    expect(all.find((x) => x.dst_ip === '10.1.4.1' && x.evidence.service === 'RDP')).toBeUndefined();
  });
});
