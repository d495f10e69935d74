import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../../../test/support/detection.js';
import { TrafficBuilder } from '../../../../test/support/packets.js';
import type { Finding } from '../../../findings/model.js';
import { robustBaseline } from './detector.js';

const ID = 'exfiltration';
const S = 1_000_000;
const H = 3_600 * S;
const MB = 1_000_000;
/** Three days ago: two days of history, then the hour under test (hour 50). */
const B = trafficBase(3 * 24 * 60);
const NOW_HOUR = B + 50 * H;

let h: DetectionHarness;
let scheduled: Finding[];
let findings: Finding[];
let sport = 20_000;

/**
 * softflowd -r exports every flow at the end of its capture, so the history is loaded in 3-hour slices
 * (one capture each): their flows are received at the end of their slice, as a live exporter's would
 * be, and scheduled runs (by receive time) see an hourly history too.
 */
const slices = new Map<number, TrafficBuilder>();
function slice(t: number): TrafficBuilder {
  const n = Math.floor((t - B) / (3 * H));
  let b = slices.get(n);
  if (!b) {
    b = new TrafficBuilder();
    slices.set(n, b);
  }
  return b;
}

function upload(t: number, client: string, server: string, dport: number, up: number, down = 2_000) {
  return slice(t).tcpSession({
    t,
    client,
    server,
    sport: sport++,
    dport,
    exchanges: [{ up, down }],
    mss: 65_000,
    gapUs: 1_000,
  });
}

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

const at = (f: Finding | undefined) => ({
  first: Date.parse(f!.first_seen) * 1000,
  last: Date.parse(f!.last_seen) * 1000,
});

beforeAll(async () => {
  h = await DetectionHarness.open();
  const popular = '192.0.2.10';
  // History (hours 0-47): hosts with a baseline upload 3-7 MB to a popular service every 3 hours.
  const withBaseline = [
    '10.1.0.10',
    '10.1.0.12',
    '10.1.0.20',
    '10.1.0.30',
    '10.1.0.40',
    '10.1.0.41',
    '10.1.0.60',
  ];
  for (const [n, host] of withBaseline.entries()) {
    for (let i = 0; i < 16; i++)
      upload(B + i * 3 * H + n * 60 * S, host, popular, 443, (3 + ((i + n) % 5)) * MB);
  }
  // Twelve more hosts use the popular service once each: 19 internal hosts talk to it.
  for (let i = 1; i <= 12; i++) upload(B + 5 * H + i * 30 * S, `10.1.1.${i}`, popular, 443, 200_000);
  // A public server (10.1.0.80) answers small downloads from Internet clients every 3 hours.
  for (let i = 0; i < 16; i++) {
    slice(B + i * 3 * H).tcpSession({
      t: B + i * 3 * H + 30 * 60 * S,
      client: `198.51.100.${10 + i}`,
      server: '10.1.0.80',
      sport: 50_000 + i,
      dport: 443,
      exchanges: [{ up: 600, down: 4 * MB }],
      mss: 65_000,
    });
  }
  // The backup server (10.1.0.20) sends 1 GB to its backup target every night at 02:00 (hours 2, 26).
  for (const hour of [2, 26]) upload(B + hour * H, '10.1.0.20', '198.51.100.200', 22, 1_000 * MB);

  // Hour 50, positives.
  // 1. A workstation with a ~5 MB/h baseline uploads 400 MB to an address no other host talks to.
  upload(NOW_HOUR + 10 * 60 * S, '10.1.0.10', '203.0.113.50', 443, 400 * MB);
  // 2. Ten near-equal 120 MB chunks, one connection each, to one address (T1030).
  for (let i = 0; i < 10; i++)
    upload(NOW_HOUR + 5 * 60 * S + i * 90 * S, '10.1.0.12', '198.51.100.77', 8443, 120 * MB);
  // 3. 150 MB to an address on an indicator list: T1041 whatever the baseline says.
  upload(NOW_HOUR + 20 * 60 * S, '10.1.0.60', '203.0.113.99', 443, 150 * MB);
  // 4. A host's first day (no baseline), IPv6: 700 MB clears the absolute threshold.
  upload(NOW_HOUR + 15 * 60 * S, 'fd00::51', '2001:db8::71', 443, 700 * MB);
  // 5. 600 MB to the popular service: reported, at low severity.
  upload(NOW_HOUR + 25 * 60 * S, '10.1.0.41', popular, 443, 600 * MB);
  // 6. An Internet client downloads 700 MB from the public server: the peer initiated it.
  slice(NOW_HOUR).tcpSession({
    t: NOW_HOUR + 30 * 60 * S,
    client: '198.51.100.90',
    server: '10.1.0.80',
    sport: 51_000,
    dport: 443,
    exchanges: [{ up: 600, down: 700 * MB }],
    mss: 65_000,
    gapUs: 1_000,
  });

  // Hour 50, look-alikes.
  // The backup server's third night: routine (the same volume to the same peer before).
  upload(NOW_HOUR + 2 * 60 * S, '10.1.0.20', '198.51.100.200', 22, 1_000 * MB);
  // A new backup server's first night: would clear the absolute threshold; it is allowlisted.
  upload(NOW_HOUR + 3 * 60 * S, '10.1.0.21', '198.51.100.201', 22, 1_000 * MB);
  // A download: 800 MB inbound.
  slice(NOW_HOUR).tcpSession({
    t: NOW_HOUR + 12 * 60 * S,
    client: '10.1.0.30',
    server: '203.0.113.60',
    sport: 52_000,
    dport: 443,
    exchanges: [{ up: 500, down: 800 * MB }],
    mss: 65_000,
    gapUs: 1_000,
  });
  // 200 MB to the popular service: below the absolute threshold that popular destinations need.
  upload(NOW_HOUR + 35 * 60 * S, '10.1.0.40', popular, 443, 200 * MB);
  // A host's first day: 200 MB to a rare address, no baseline, below the absolute threshold.
  upload(NOW_HOUR + 40 * 60 * S, '10.1.0.50', '203.0.113.70', 443, 200 * MB);

  for (const n of [...slices.keys()].sort((x, y) => x - y)) await h.load(slices.get(n)!);
  const intel = join(h.dir.path, 'c2-addresses.txt');
  writeFileSync(intel, '# category: malicious\n203.0.113.99 # test C2\n');
  const settings = {
    threatIntel: [intel],
    detectors: { [ID]: { allowlist: { src: ['10.1.0.21/32'] } } },
  };

  // A scheduled run first (flows by receive time; the harness stores the export time as receive time),
  // then the findings are cleared and the same traffic is backfilled (flows by traffic time).
  const live = h.detection(settings);
  const from = NOW_HOUR / 1000;
  await live.engine.runWindow(ID, {
    mode: 'scheduled',
    from,
    to: from + 3_600_000,
    contextFrom: from - 3_300_000,
    range: null,
  });
  scheduled = await h.findings(ID);
  await h.store.client.command({ query: 'TRUNCATE TABLE findings' });
  await h.store.client.command({ query: 'TRUNCATE TABLE finding_contributions' });

  const { engine } = h.detection(settings);
  await engine.backfill({ from: (B + 49 * H) / 1000, to: (B + 52 * H) / 1000, detectors: [ID] });
  findings = await h.findings(ID);
}, 240_000);

afterAll(async () => {
  await h?.close();
});

const bySrc = (src: string) => findings.find((f) => f.src_ip === src);

describe('exfiltration', () => {
  test('an upload far above the host baseline to a rare destination is T1048 with the baseline in evidence', () => {
    const f = bySrc('10.1.0.10');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('203.0.113.50');
    expect(f!.technique_ids).toEqual(['T1048']);
    expect(f!.tactic_ids).toEqual(['TA0010']);
    expect(f!.severity).toBe('medium');
    const e = f!.evidence;
    expect(e.bytes_out).toBeGreaterThan(400 * MB);
    expect(e.bytes_out).toBeLessThan(402 * MB);
    // What comes back is the receiver's ACKs: a fraction of a percent of what went out.
    expect(e.bytes_in).toBeLessThan(0.005 * 400 * MB);
    expect(e.destination_hosts).toBe(1);
    expect(e.destination_rare).toBe(true);
    const baseline = e.baseline as Record<string, number>;
    expect(baseline.points_hours).toBe(16);
    // Hourly baseline of 3-7 MB (median 5 MB plus the session's own bytes).
    expect(baseline.median_bytes_per_hour).toBeGreaterThan(4.5 * MB);
    expect(baseline.median_bytes_per_hour).toBeLessThan(6 * MB);
    expect(e.z_score as number).toBeGreaterThan(3.5);
    expect(e.peer_ports).toEqual([443]);
    expect((e.thresholds as Record<string, number>).z).toBe(3.5);
    expect(e.reason).toBe('z-score over the host baseline');
    // Traffic time: the upload began at minute 10 of hour 50 and took about 7 s.
    expect(Math.abs(at(f).first - (NOW_HOUR + 10 * 60 * S))).toBeLessThan(2 * S);
    expect(at(f).last - at(f).first).toBeLessThan(15 * S);
    expect(f!.title).toContain('10.1.0.10');
    expect(f!.title).toContain('203.0.113.50');
  });

  test('near-equal chunks over ten connections add T1030; 1.2 GB is high severity', () => {
    const f = bySrc('10.1.0.12');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('198.51.100.77');
    expect(f!.technique_ids).toEqual(['T1048', 'T1030']);
    expect(f!.severity).toBe('high');
    expect(f!.evidence.connections).toBe(10);
    expect(f!.evidence.chunks).toBe(10);
    expect(f!.evidence.chunk_cv as number).toBeLessThan(0.01);
    expect(f!.evidence.peer_ports).toEqual([8443]);
    expect(Math.abs(at(f).first - (NOW_HOUR + 5 * 60 * S))).toBeLessThan(2 * S);
    expect(Math.abs(at(f).last - (NOW_HOUR + 5 * 60 * S + 9 * 90 * S))).toBeLessThan(10 * S);
  });

  test('an upload to a listed destination is T1041 (C2 channel) at high severity', () => {
    const f = bySrc('10.1.0.60');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('203.0.113.99');
    expect(f!.technique_ids).toEqual(['T1041']);
    expect(f!.severity).toBe('high');
    expect(f!.evidence.indicator).toEqual({
      indicator: '203.0.113.99',
      list: 'c2-addresses.txt',
      category: 'malicious',
    });
  });

  test("a host's first day falls back to the absolute threshold and says so (IPv6)", () => {
    const f = bySrc('fd00::51');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('2001:db8::71');
    expect(f!.severity).toBe('medium');
    expect(f!.evidence.baseline).toBeNull();
    expect(f!.evidence.z_score).toBeNull();
    expect(f!.evidence.baseline_hours).toBe(0);
    expect(String(f!.evidence.reason)).toContain('no baseline');
    expect(f!.title).toContain('no baseline');
  });

  test('a large upload to a popular destination is reported at low severity', () => {
    const f = bySrc('10.1.0.41');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('192.0.2.10');
    expect(f!.severity).toBe('low');
    expect(f!.evidence.destination_hosts).toBe(19);
    expect(f!.evidence.destination_popular).toBe(true);
  });

  test('a download an Internet client pulled from a public server is one step lower', () => {
    const f = bySrc('10.1.0.80');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('198.51.100.90');
    expect(f!.evidence.peer_initiated).toBe(true);
    // Rare destination and above the absolute bar would be high; served, it is medium.
    expect(f!.severity).toBe('medium');
  });

  test('routine backups, the allowlisted backup server, downloads and small uploads stay silent', () => {
    expect(findings.map((f) => f.src_ip).sort()).toEqual([
      '10.1.0.10',
      '10.1.0.12',
      '10.1.0.41',
      '10.1.0.60',
      '10.1.0.80',
      'fd00::51',
    ]);
  });

  test('a scheduled run (history by receive time) finds the same transfers', () => {
    expect(scheduled.map((f) => f.src_ip).sort()).toEqual(findings.map((f) => f.src_ip).sort());
    const f = scheduled.find((x) => x.src_ip === '10.1.0.10');
    expect((f!.evidence.baseline as Record<string, number>).points_hours).toBeGreaterThanOrEqual(15);
  });
});

describe('exfiltration baseline and sampling', () => {
  test('the robust baseline is the median and 1.4826·MAD of log1p bytes, with a floor', () => {
    const hourly = [1e6, 2e6, 3e6, 4e6, 100e6];
    const r = robustBaseline(hourly, 0.01)!;
    expect(r.points).toBe(5);
    expect(r.medianLog).toBeCloseTo(Math.log1p(3e6), 6);
    const devs = hourly.map((x) => Math.abs(Math.log1p(x) - Math.log1p(3e6))).sort((a, b) => a - b);
    expect(r.madLog).toBeCloseTo(devs[2]!, 6);
    expect(r.sigma).toBeCloseTo(1.4826 * devs[2]!, 6);
    expect(robustBaseline([5e6, 5e6, 5e6], 0.5)!.sigma).toBe(0.5);
    expect(robustBaseline([], 0.5)).toBeNull();
  });

  test('sampled flows: bytes are already scaled, so 1:100 records of 6 MB each count as 600 MB', async () => {
    // Rows inserted directly (softflowd -r cannot sample): a first-day host sends 6 MB of sampled
    // packets (600 MB at 1:100) to a rare address, in two active-timeout records of one connection.
    const t0 = B + 60 * H;
    const rows = [0, 1].map((i) => ({
      time_received: new Date((t0 + (i + 1) * 300 * S) / 1000).toISOString().slice(0, 19).replace('T', ' '),
      flow_start: new Date((t0 + i * 300 * S) / 1000).toISOString().replace('T', ' ').replace('Z', ''),
      flow_end: new Date((t0 + (i + 1) * 300 * S) / 1000).toISOString().replace('T', ' ').replace('Z', ''),
      exporter_address: '::ffff:192.0.2.251',
      src_addr: '::ffff:10.7.0.5',
      dst_addr: '::ffff:203.0.113.150',
      src_port: 40_000,
      dst_port: 443,
      proto: 6,
      tcp_flags: 0x1b,
      bytes: 300 * MB,
      packets: 200_000,
      sampling_rate: 100,
      end_reason: 2,
    }));
    await insertFlows(rows);
    const { engine } = h.detection();
    await engine.backfill({ from: t0 / 1000, to: (t0 + H) / 1000, detectors: [ID] });
    const f = (await h.findings(ID)).find((x) => x.src_ip === '10.7.0.5');
    expect(f).toBeDefined();
    expect(f!.evidence.bytes_out).toBe(600 * MB);
    expect(f!.evidence.sampling_rate).toBe(100);
    expect(f!.evidence.connections).toBe(1);
    expect(f!.flows).toBe(2);
  });
});
