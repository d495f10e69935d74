import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../../../test/support/detection.js';
import { ACK, FIN, PSH, SYN, TCP, TrafficBuilder } from '../../../../test/support/packets.js';
import type { Finding } from '../../../findings/model.js';

const ID = 'crypto-mining';
const T0 = trafficBase();
const S = 1_000_000;

let h: DetectionHarness;
let findings: Finding[];
let minerSlices: number;
let splitRecords: number;

const at = (f: Finding) => ({ first: Date.parse(f.first_seen) * 1000, last: Date.parse(f.last_seen) * 1000 });

/** A stratum-like session: a job down and a share up every 30 s for `minutes`. */
function stratum(
  b: TrafficBuilder,
  t: number,
  client: string,
  server: string,
  sport: number,
  dport: number,
  minutes: number,
) {
  return b.tcpSession({
    t,
    client,
    server,
    sport,
    dport,
    exchanges: Array.from({ length: minutes * 2 }, () => ({ up: 180, down: 420 })),
    thinkUs: 30 * S,
  });
}

/**
 * The same kind of session cut into captures of `sliceSeconds` each. softflowd reading a file expires
 * nothing before the file ends (its active timeout never fires), so each slice is exported by its own
 * run: the connection arrives as one record per slice and direction, as from a router whose active
 * timeout is that long.
 */
function slicedStratum(
  t: number,
  client: string,
  server: string,
  sport: number,
  dport: number,
  minutes: number,
  sliceSeconds: number,
): TrafficBuilder[] {
  const slices: TrafficBuilder[] = [];
  const send = (at: number, up: boolean, flags: number, payload = 0) => {
    const i = Math.floor((at - t) / (sliceSeconds * S));
    slices[i] ??= new TrafficBuilder();
    const [src, dst, sp, dp] = up ? [client, server, sport, dport] : [server, client, dport, sport];
    slices[i]!.packet({ t: at, src, dst, proto: TCP, sport: sp, dport: dp, flags, payload });
  };
  send(t, true, SYN);
  send(t + 2_000, false, SYN | ACK);
  send(t + 4_000, true, ACK);
  for (let i = 0; i < minutes * 2; i++) {
    const at = t + 10_000 + i * 30 * S;
    send(at, true, PSH | ACK, 180);
    send(at + 2_000, false, PSH | ACK, 420);
    send(at + 3_000, true, ACK);
  }
  const end = t + 10_000 + minutes * 60 * S;
  send(end, true, FIN | ACK);
  send(end + 2_000, false, FIN | ACK);
  send(end + 4_000, true, ACK);
  return slices.filter((x) => x !== undefined);
}

beforeAll(async () => {
  h = await DetectionHarness.open();
  const pools = join(h.dir.path, 'mining-pools.txt');
  writeFileSync(pools, '# nocoin-style pool addresses\n203.0.113.200 # pool.example\n2001:db8:c0::/48\n');

  const b = new TrafficBuilder();
  // Positive 1: a miner on a stratum port, unlisted: 25 minutes of small two-way exchanges, exported
  // in 5-minute records (below).
  const miner = slicedStratum(T0 + 60 * S, '10.5.0.10', '198.51.100.33', 41_000, 3333, 25, 300);
  // Positive 2: a listed pool on 443 (pools hide behind TLS ports): a short session is enough.
  stratum(b, T0 + 2 * 60 * S, '10.5.0.11', '203.0.113.200', 41_001, 443, 2);
  // Positive 3: a configured pool range, port 80, IPv4; and a listed IPv6 /48 on 14444.
  stratum(b, T0 + 3 * 60 * S, '10.5.0.12', '192.0.2.140', 41_002, 80, 2);
  stratum(b, T0 + 4 * 60 * S, 'fd00::12', '2001:db8:c0::7', 41_003, 14444, 2);
  // Positive 4: a host trying a listed pool, blocked (SYNs only): low.
  for (let i = 0; i < 3; i++)
    b.synProbe(T0 + 5 * 60 * S + i * 3 * S, '10.5.0.13', '203.0.113.200', 41_004, 3333, 'none');

  // Look-alikes.
  // A short connection to a development web server on 8888.
  b.tcpSession({
    t: T0 + 6 * 60 * S,
    client: '10.5.0.20',
    server: '198.51.100.88',
    sport: 42_000,
    dport: 8888,
    exchanges: Array.from({ length: 5 }, () => ({ up: 600, down: 30_000 })),
  });
  // A long session to an unlisted address on 443, as small as a miner's.
  stratum(b, T0 + 60 * S, '10.5.0.21', '198.51.100.44', 42_001, 443, 25);
  // A long session on 9999 that moves megabytes a minute (not stratum-sized).
  b.tcpSession({
    t: T0 + 60 * S,
    client: '10.5.0.22',
    server: '198.51.100.99',
    sport: 42_002,
    dport: 9999,
    exchanges: Array.from({ length: 40 }, () => ({ up: 20_000, down: 1_000_000 })),
    thinkUs: 30 * S,
    mss: 65_000,
  });
  // A refused connection to a stratum port (one way, RST): not a session.
  b.synProbe(T0 + 7 * 60 * S, '10.5.0.23', '198.51.100.34', 42_003, 4444, 'rst');

  const loaded = await h.load(b);
  minerSlices = miner.length;
  for (const slice of miner) await h.load(slice);
  const rows = await h.store.client.query({
    query: "SELECT count() AS n FROM flows WHERE src_addr = toIPv6('::ffff:10.5.0.10')",
    format: 'JSONEachRow',
  });
  splitRecords = Number(((await rows.json()) as Array<{ n: number }>)[0]!.n);
  const { engine } = h.detection({
    threatIntel: [pools],
    detectors: { [ID]: { params: { pools: ['192.0.2.128/25'] } } },
  });
  await engine.backfill({ from: loaded.firstMs - 60_000, to: loaded.lastMs + 600_000, detectors: [ID] });
  findings = await h.findings(ID);
}, 120_000);

afterAll(async () => {
  await h?.close();
});

const bySrc = (src: string) => findings.find((f) => f.src_ip === src);

describe('crypto-mining', () => {
  test('a long, small, two-way session on a stratum port is one connection across active-timeout splits (medium)', () => {
    // Six captures: six records from the miner (and six back), all one connection.
    expect(minerSlices).toBe(6);
    expect(splitRecords).toBe(6);
    const f = bySrc('10.5.0.10');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('198.51.100.33');
    expect(f!.technique_ids).toEqual(['T1496.001']);
    expect(f!.tactic_ids).toEqual(['TA0040']);
    expect(f!.severity).toBe('medium');
    const e = f!.evidence;
    expect(e.connections).toBe(1);
    expect(e.server_ports).toEqual([3333]);
    expect(e.longest_seconds as number).toBeGreaterThanOrEqual(24 * 60);
    expect(e.longest_seconds as number).toBeLessThanOrEqual(26 * 60);
    expect(e.bytes_per_minute as number).toBeLessThan(60_000);
    expect(e.indicator).toBeNull();
    expect(Math.abs(at(f!).first - (T0 + 60 * S))).toBeLessThan(1.5 * S);
    expect(Math.abs(at(f!).last - (T0 + 60 * S + 25 * 60 * S))).toBeLessThan(60 * S);
  });

  test('a listed pool on 443 is high after two minutes, the list named in the evidence', () => {
    const f = bySrc('10.5.0.11');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('203.0.113.200');
    expect(f!.severity).toBe('high');
    expect(f!.evidence.indicator).toEqual({
      indicator: '203.0.113.200',
      list: 'mining-pools.txt',
      note: 'pool.example',
    });
    expect(f!.evidence.stratum_port).toBe(false);
    expect(f!.title).toContain('mining-pools.txt');
  });

  test('a configured pool range and a listed IPv6 /48 match on any port', () => {
    const v4 = bySrc('10.5.0.12');
    expect(v4).toBeDefined();
    expect(v4!.dst_ip).toBe('192.0.2.140');
    expect(v4!.severity).toBe('high');
    expect(v4!.evidence.configured_pool).toBe(true);
    const v6 = bySrc('fd00::12');
    expect(v6).toBeDefined();
    expect(v6!.dst_ip).toBe('2001:db8:c0::7');
    expect((v6!.evidence.indicator as Record<string, string>).indicator).toBe('2001:db8:c0::/48');
  });

  test('blocked attempts to a listed pool are low', () => {
    const f = bySrc('10.5.0.13');
    expect(f).toBeDefined();
    expect(f!.severity).toBe('low');
    expect(f!.evidence.two_way_connections).toBe(0);
    expect(f!.title).toContain('unanswered');
  });

  test('a short 8888 session, a long unlisted 443 session, a heavy 9999 session and a refused probe stay silent', () => {
    expect(findings.map((f) => f.src_ip).sort()).toEqual([
      '10.5.0.10',
      '10.5.0.11',
      '10.5.0.12',
      '10.5.0.13',
      'fd00::12',
    ]);
  });
});

describe('crypto-mining sampling', () => {
  test('1:100 sampled records of a long stratum session: scaled bytes per minute, duration from the records', async () => {
    const t0 = T0 + 60 * 60 * S;
    const ms = (us: number) => new Date(us / 1000).toISOString().replace('T', ' ').replace('Z', '');
    const row = (src: string, dst: string, sport: number, dport: number, i: number) => ({
      time_received: ms(t0 + (i + 1) * 300 * S).slice(0, 19),
      flow_start: ms(t0 + i * 300 * S),
      flow_end: ms(t0 + (i + 1) * 300 * S - S),
      exporter_address: '::ffff:192.0.2.251',
      src_addr: `::ffff:${src}`,
      dst_addr: `::ffff:${dst}`,
      src_port: sport,
      dst_port: dport,
      proto: 6,
      tcp_flags: 0x18,
      // Two sampled packets of ~150 B at 1:100.
      bytes: 30_000,
      packets: 200,
      sampling_rate: 100,
      end_reason: 2,
    });
    const values = [0, 1, 2].flatMap((i) => [
      row('10.5.9.9', '198.51.100.35', 43_000, 5555, i),
      row('198.51.100.35', '10.5.9.9', 5555, 43_000, i),
    ]);
    await h.store.client.insert({
      table: 'flows',
      format: 'JSONEachRow',
      // Its own deduplication token: the embedded session keeps the flow writer's last one.
      clickhouse_settings: { insert_deduplication_token: `test-${randomUUID()}` },
      values,
    });
    const { engine } = h.detection();
    await engine.backfill({ from: t0 / 1000, to: (t0 + 3600 * S) / 1000, detectors: [ID] });
    const f = (await h.findings(ID)).find((x) => x.src_ip === '10.5.9.9');
    expect(f).toBeDefined();
    expect(f!.evidence.connections).toBe(1);
    expect(f!.evidence.longest_seconds).toBe(899);
    // 6 × 30 kB over 899 s.
    expect(f!.evidence.bytes_per_minute).toBe(Math.round((180_000 * 60) / 899));
    expect(f!.evidence.sampling_rate).toBe(100);
  });
});
