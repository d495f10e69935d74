import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../../../test/support/detection.js';
import { ACK, PSH, TCP, TrafficBuilder } from '../../../../test/support/packets.js';
import type { Finding } from '../../../findings/model.js';
import { queryRows } from '../../../storage/clickhouse.js';

const T0 = trafficBase(180);
const S = 1_000_000;
const MIN = 60 * S;

let h: DetectionHarness;
let findings: Finding[];

/** `n` exchanges, one every `thinkUs`. */
const repeat = (n: number, up: number, down: number) => Array.from({ length: n }, () => ({ up, down }));

const near = (iso: string, us: number, toleranceMs = 2_000): boolean =>
  Math.abs(Date.parse(iso) - us / 1000) < toleranceMs;

/** Copies a client's flows (to the listed servers) to another client address, with a sampling rate. */
async function copyClient(
  from: string,
  to: string,
  servers: string[],
  rate: number,
  token: string,
  exceptPort = 0,
): Promise<void> {
  const rows = await queryRows<Record<string, unknown>>(
    h.store,
    `SELECT * FROM flows
     WHERE ((src_addr = toIPv6({c:String}) AND has({s:Array(IPv6)}, dst_addr))
        OR (dst_addr = toIPv6({c:String}) AND has({s:Array(IPv6)}, src_addr)))
       AND src_port != {p:UInt16} AND dst_port != {p:UInt16}`,
    { c: `::ffff:${from}`, s: servers.map((x) => `::ffff:${x}`), p: exceptPort },
  );
  const moved = (a: unknown): unknown => (a === `::ffff:${from}` ? `::ffff:${to}` : a);
  await h.store.client.insert({
    table: 'flows',
    format: 'JSONEachRow',
    // Our own deduplication token: the embedded session still holds the one of the importer's last insert.
    clickhouse_settings: { insert_deduplication_token: token },
    values: rows.map((r) => ({
      ...r,
      src_addr: moved(r.src_addr),
      dst_addr: moved(r.dst_addr),
      bytes: Number(r.bytes) * rate,
      packets: Number(r.packets) * rate,
      sampling_rate: rate,
    })),
  });
}

const P2P_PEERS = Array.from({ length: 12 }, (_, k) => `203.0.113.${100 + k}`);

beforeAll(async () => {
  h = await DetectionHarness.open();
  const b = new TrafficBuilder();
  // Positive: a reverse shell, 40 minutes of small keystroke/answer exchanges to port 4444.
  b.tcpSession({
    t: T0,
    client: '10.3.0.5',
    server: '203.0.113.66',
    sport: 49_800,
    dport: 4_444,
    exchanges: repeat(150, 40, 150),
    thinkUs: 16 * S,
  });
  // Positive: 30 MB uploaded to port 8999 in a couple of minutes.
  b.tcpSession({
    t: T0 + 5 * MIN,
    client: '10.3.0.6',
    server: '198.51.100.88',
    sport: 49_900,
    dport: 8_999,
    exchanges: [{ up: 30_000_000, down: 200 }],
    mss: 65_000,
    gapUs: 200_000,
  });
  // Positive: an IPv6 session on port 9001, 15 minutes, about 100 kB.
  b.tcpSession({
    t: T0 + 10 * MIN,
    client: 'fd00::5',
    server: '2001:db8::66',
    sport: 50_100,
    dport: 9_001,
    exchanges: repeat(15, 2_000, 4_000),
    thinkUs: 60 * S,
  });
  // Look-alike: a 30-minute HTTPS session (its return direction's destination port is 51000).
  b.tcpSession({
    t: T0 + MIN,
    client: '10.3.0.7',
    server: '198.51.100.1',
    sport: 51_000,
    dport: 443,
    exchanges: repeat(30, 800, 20_000),
    thinkUs: 60 * S,
  });
  // Look-alike: only the return direction of some session is routed past the exporter (no handshake).
  for (let i = 0; i < 60; i++) {
    b.packet({
      t: T0 + 2 * MIN + i * 30 * S,
      src: '198.51.100.2',
      dst: '10.3.0.15',
      proto: TCP,
      sport: 443,
      dport: 52_000,
      flags: PSH | ACK,
      payload: 1_400,
    });
  }
  // Look-alike: passive FTP, a control connection to 21 and a 20 MB data connection to port 40123.
  b.tcpSession({
    t: T0 + 3 * MIN,
    client: '10.3.0.20',
    server: '192.0.2.21',
    sport: 45_099,
    dport: 21,
    exchanges: repeat(6, 30, 80),
    thinkUs: 20 * S,
  });
  b.tcpSession({
    t: T0 + 3 * MIN + 30 * S,
    client: '10.3.0.20',
    server: '192.0.2.21',
    sport: 45_100,
    dport: 40_123,
    exchanges: [{ up: 100, down: 20_000_000 }],
    mss: 65_000,
    gapUs: 100_000,
  });
  // Look-alike: VoIP media over UDP between high ports for 20 minutes.
  for (let i = 0; i < 1_200; i++) {
    b.udpExchange(T0 + 4 * MIN + i * S, '10.3.0.8', '198.51.100.50', 40_002, 40_000, 172, 172);
  }
  // Look-alike: a web service on 8443, in the allowed list: 30 minutes, 5 MB.
  b.tcpSession({
    t: T0 + 6 * MIN,
    client: '10.3.0.9',
    server: '203.0.113.70',
    sport: 51_100,
    dport: 8_443,
    exchanges: repeat(30, 1_000, 166_000),
    thinkUs: 60 * S,
  });
  // Look-alike: a short, small connection to port 7777.
  b.tcpSession({
    t: T0 + 7 * MIN,
    client: '10.3.0.10',
    server: '203.0.113.71',
    sport: 51_200,
    dport: 7_777,
    exchanges: [{ up: 300, down: 1_500 }],
  });
  // Look-alike: a P2P client with 15-minute sessions to 12 peers on odd ports.
  for (const [k, peer] of P2P_PEERS.entries()) {
    b.tcpSession({
      t: T0 + 8 * MIN + k * 10 * S,
      client: '10.3.0.11',
      server: peer,
      sport: 50_200 + k,
      dport: 30_000 + k * 7,
      exchanges: repeat(15, 3_000, 10_000),
      thinkUs: 60 * S,
    });
  }
  await h.load(b, { timeouts: { maxlife: 600 }, maxFlows: 16 });

  // Sampling: three of the P2P client's peers, as a 1:10 sampled export shows them: only 3 distinct
  // servers, which is at the threshold once divided by the rate (10 / 10, floor 3): still a P2P client.
  await copyClient('10.3.0.11', '10.3.0.12', P2P_PEERS.slice(0, 3), 10, 'nsp-sampled');
  // ... and the same three unsampled from another host: under the threshold of 10, reported.
  await copyClient('10.3.0.11', '10.3.0.13', P2P_PEERS.slice(0, 3), 1, 'nsp-unsampled');

  // The passive FTP data connection without its control connection: nothing says it is FTP any more.
  await copyClient('10.3.0.20', '10.3.0.21', ['192.0.2.21'], 1, 'nsp-ftp-data', 21);

  // Handshake timing: the reverse shell again, on ports where the higher one is the server's (client
  // 40000, server 45000), with the server's first record 30 ms after the client's SYN, as a uniflow
  // exporter that times each direction shows it (softflowd gives both directions one start time).
  const shell = await queryRows<Record<string, unknown>>(
    h.store,
    `SELECT * FROM flows WHERE src_addr = toIPv6('::ffff:10.3.0.5') OR dst_addr = toIPv6('::ffff:10.3.0.5')`,
  );
  const serverFirst = Math.min(
    ...shell.filter((r) => r.src_addr === '::ffff:203.0.113.66').map((r) => Date.parse(String(r.flow_start))),
  );
  await h.store.client.insert({
    table: 'flows',
    format: 'JSONEachRow',
    clickhouse_settings: { insert_deduplication_token: 'nsp-handshake' },
    values: shell.map((r) => {
      const fromClient = r.src_addr === '::ffff:10.3.0.5';
      const start = Date.parse(String(r.flow_start));
      return {
        ...r,
        src_addr: fromClient ? '::ffff:10.3.0.16' : r.src_addr,
        dst_addr: fromClient ? r.dst_addr : '::ffff:10.3.0.16',
        src_port: fromClient ? 40_000 : 45_000,
        dst_port: fromClient ? 45_000 : 40_000,
        flow_start: !fromClient && start === serverFirst ? new Date(start + 30).toISOString() : r.flow_start,
      };
    }),
  });

  const { engine } = h.detection();
  await engine.backfill({
    from: T0 / 1000 - 60_000,
    to: T0 / 1000 + 2 * 3_600_000,
    detectors: ['non-standard-port'],
  });
  findings = await h.findings('non-standard-port');
}, 300_000);

afterAll(async () => {
  await h?.close();
});

describe('non-standard-port', () => {
  test('a reverse shell on 4444 is an interactive session, medium, with both directions', () => {
    const f = findings.find((x) => x.src_ip === '10.3.0.5');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('203.0.113.66');
    expect(f!.technique_ids).toEqual(['T1571']);
    expect(f!.tactic_ids).toEqual(['TA0011']);
    expect(f!.severity).toBe('medium');
    const e = f!.evidence;
    expect(e.server_port).toBe(4_444);
    expect(e.shape).toBe('interactive');
    expect(e.sessions).toBe(1);
    expect(e.client_ports).toEqual([49_800]);
    expect(Math.abs(Number(e.longest_seconds) - 149 * 16)).toBeLessThan(10);
    expect(Number(e.mean_packet_bytes_client_to_server)).toBeLessThan(200);
    expect(Number(e.bytes_server_to_client)).toBeGreaterThan(150 * 150);
    expect(e.threshold_duration_seconds).toBe(600);
    expect(near(f!.first_seen, T0)).toBe(true);
    expect(near(f!.last_seen, T0 + 149 * 16 * S, 5_000)).toBe(true);
  });

  test('with the handshake timed per direction, the client is the side that sent SYN first, whatever the ports', () => {
    const f = findings.find((x) => x.src_ip === '10.3.0.16');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('203.0.113.66');
    expect(f!.evidence.server_port).toBe(45_000);
    expect(f!.evidence.client_ports).toEqual([40_000]);
    expect(f!.evidence.client_told_by).toEqual(['handshake']);
    // softflowd's own records carry no such timing: the ports told.
    expect(findings.find((x) => x.src_ip === '10.3.0.5')!.evidence.client_told_by).toEqual(['ports']);
  });

  test('30 MB to port 8999 is bulk, medium', () => {
    const f = findings.find((x) => x.src_ip === '10.3.0.6');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('198.51.100.88');
    expect(f!.severity).toBe('medium');
    expect(f!.evidence.shape).toBe('bulk');
    expect(Number(f!.evidence.bytes_client_to_server)).toBeGreaterThan(30_000_000);
    expect(f!.title).toContain('8999');
  });

  test('an IPv6 session on 9001 is a low-severity long session', () => {
    const f = findings.find((x) => x.src_ip === 'fd00::5');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('2001:db8::66');
    expect(f!.severity).toBe('low');
    expect(f!.evidence.shape).toBe('long-session');
    expect(f!.evidence.server_port).toBe(9_001);
  });

  test('three odd-port peers are reported unsampled, but reach the P2P threshold under 1:10 sampling', () => {
    const unsampled = findings.filter((x) => x.src_ip === '10.3.0.13');
    expect(unsampled.map((f) => f.dst_ip).sort()).toEqual(P2P_PEERS.slice(0, 3).sort());
    expect(unsampled[0]!.evidence.client_odd_port_servers).toBe(3);
    expect(findings.some((x) => x.src_ip === '10.3.0.12')).toBe(false);
  });

  test('the FTP data connection alone, without its control connection, is reported as bulk', () => {
    const f = findings.find((x) => x.src_ip === '10.3.0.21');
    expect(f).toBeDefined();
    expect(f!.evidence.server_port).toBe(40_123);
    expect(f!.evidence.shape).toBe('bulk');
  });

  test('HTTPS and its return flows, a lone return direction, passive FTP, UDP media, 8443, a short connection and a P2P client stay silent', () => {
    const sources = [...new Set(findings.map((f) => f.src_ip))].sort();
    expect(sources).toEqual(['10.3.0.13', '10.3.0.16', '10.3.0.21', '10.3.0.5', '10.3.0.6', 'fd00::5']);
    expect(findings.some((f) => f.dst_ip?.startsWith('10.'))).toBe(false);
  });
});
