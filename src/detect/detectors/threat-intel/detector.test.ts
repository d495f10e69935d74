import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../../../test/support/detection.js';
import { TrafficBuilder } from '../../../../test/support/packets.js';
import type { Detection } from '../../../detect/index.js';
import type { Finding } from '../../../findings/model.js';

const ID = 'threat-intel';
const T0 = trafficBase();
const S = 1_000_000;
const MB = 1_000_000;

let h: DetectionHarness;
let detection: Detection;
let range: { from: number; to: number };
let findings: Finding[];
let badList: string;

const BAD = [
  '# category: malicious',
  '203.0.113.66 # emotet C2',
  '198.51.100.0/24 # bulletproof hosting',
  '2001:db8:bad::/48',
  '',
].join('\n');

const at = (f: Finding) => ({ first: Date.parse(f.first_seen) * 1000, last: Date.parse(f.last_seen) * 1000 });

beforeAll(async () => {
  h = await DetectionHarness.open();
  badList = join(h.dir.path, 'bad-ips.txt');
  writeFileSync(badList, BAD);
  const torList = join(h.dir.path, 'tor-exits.txt');
  writeFileSync(torList, '192.0.2.99\n');
  const miningList = join(h.dir.path, 'mining-pools.txt');
  writeFileSync(miningList, '203.0.113.200\n');

  const b = new TrafficBuilder();
  const session = (
    t: number,
    client: string,
    server: string,
    sport: number,
    dport: number,
    up: number,
    down: number,
  ) => b.tcpSession({ t, client, server, sport, dport, exchanges: [{ up, down }], mss: 65_000 });
  // Outbound, established: a small exchange with a listed C2 address.
  session(T0 + 10 * S, '10.4.0.10', '203.0.113.66', 40_000, 443, 8_000, 22_000);
  // Outbound, heavy: 30 MB to an address inside a listed /24.
  session(T0 + 20 * S, '10.4.0.11', '198.51.100.77', 40_001, 443, 30 * MB, 5_000);
  // Outbound, blocked: three SYNs to the C2 address, never answered.
  for (let i = 0; i < 3; i++)
    b.synProbe(T0 + 30 * S + i * S, '10.4.0.13', '203.0.113.66', 40_002, 8080, 'none');
  // Outbound to a Tor relay's ORPort (a high port: who called whom comes from the handshake).
  session(T0 + 40 * S, '10.4.0.14', '192.0.2.99', 40_003, 9001, 60_000, 140_000);
  // Outbound over IPv6 to an address inside a listed /48.
  session(T0 + 50 * S, 'fd00::14', '2001:db8:bad::5', 40_004, 443, 3_000, 9_000);
  // Inbound: a listed source logs in over SSH to two internal servers.
  session(T0 + 60 * S, '198.51.100.20', '10.4.0.80', 50_000, 22, 4_000, 6_000);
  session(T0 + 65 * S, '198.51.100.20', '10.4.0.81', 50_001, 22, 4_000, 6_000);
  // Inbound: a Tor exit browses the public web server.
  session(T0 + 70 * S, '192.0.2.99', '10.4.0.80', 50_002, 443, 700, 40_000);

  // Look-alikes.
  // The listed C2 address scans an internal host: refused, never answered (not reported by default).
  for (let port = 8000; port < 8010; port++)
    b.synProbe(T0 + 80 * S + (port - 8000) * 10_000, '203.0.113.66', '10.4.0.90', 51_000, port, 'rst');
  // The neighbour just outside the listed /24.
  session(T0 + 90 * S, '10.4.0.12', '198.51.101.77', 40_005, 443, 30 * MB, 5_000);
  // An unlisted address (listed later, to test reloading).
  session(T0 + 100 * S, '10.4.0.15', '192.0.2.200', 40_006, 443, 5_000, 50_000);
  // A mining pool: the crypto-mining detector's business.
  session(T0 + 110 * S, '10.4.0.16', '203.0.113.200', 40_007, 3333, 2_000, 2_000);

  const loaded = await h.load(b);
  range = { from: loaded.firstMs - 60_000, to: loaded.lastMs + 600_000 };
  detection = h.detection({ threatIntel: [badList, torList, miningList] });
  await detection.engine.backfill({ ...range, detectors: [ID] });
  findings = await h.findings(ID);
}, 120_000);

afterAll(async () => {
  await h?.close();
});

const out = (src: string) => findings.find((f) => f.src_ip === src && f.evidence.direction === 'outbound');

describe('threat-intel', () => {
  test('an established exchange with a listed C2 address is T1071, high, with the indicator in evidence', () => {
    const f = out('10.4.0.10');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('203.0.113.66');
    expect(f!.technique_ids).toEqual(['T1071']);
    expect(f!.tactic_ids).toEqual(['TA0011']);
    expect(f!.severity).toBe('high');
    expect(f!.evidence).toMatchObject({
      indicator: '203.0.113.66',
      list: 'bad-ips.txt',
      category: 'malicious',
      note: 'emotet C2',
      connections: 1,
      established: 1,
      attempts: 0,
      service_ports: [443],
    });
    expect(f!.evidence.bytes_out as number).toBeGreaterThan(8_000);
    expect(f!.evidence.bytes_in as number).toBeGreaterThan(22_000);
    expect(Math.abs(at(f!).first - (T0 + 10 * S))).toBeLessThan(1.5 * S);
    expect(f!.title).toContain('emotet C2');
  });

  test('a heavy transfer to an address inside a listed /24 is critical; the neighbour outside it is silent', () => {
    const f = out('10.4.0.11');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('198.51.100.77');
    expect(f!.evidence.indicator).toBe('198.51.100.0/24');
    expect(f!.severity).toBe('critical');
    expect(f!.evidence.bytes_out as number).toBeGreaterThan(30 * MB);
    expect(findings.find((x) => x.src_ip === '10.4.0.12' || x.dst_ip === '198.51.101.77')).toBeUndefined();
  });

  test('unanswered attempts to a listed address are low', () => {
    const f = out('10.4.0.13');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('203.0.113.66');
    expect(f!.severity).toBe('low');
    expect(f!.evidence).toMatchObject({ connections: 1, established: 0, attempts: 1, service_ports: [8080] });
    expect(f!.packets).toBe(3);
  });

  test('a connection to a Tor relay is T1090.003 (medium), the relay being the responder on its high port', () => {
    const f = out('10.4.0.14');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('192.0.2.99');
    expect(f!.technique_ids).toEqual(['T1090.003']);
    expect(f!.severity).toBe('medium');
    expect(f!.evidence.category).toBe('tor');
    expect(f!.evidence.service_ports).toEqual([9001]);
  });

  test('an IPv6 address inside a listed /48 matches', () => {
    const f = out('fd00::14');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('2001:db8:bad::5');
    expect(f!.evidence.indicator).toBe('2001:db8:bad::/48');
    expect(f!.severity).toBe('high');
  });

  test('inbound SSH from a listed source is one T1133 finding with both targets', () => {
    const f = findings.find((x) => x.src_ip === '198.51.100.20');
    expect(f).toBeDefined();
    expect(f!.evidence.direction).toBe('inbound');
    expect(f!.technique_ids).toEqual(['T1133']);
    expect(f!.tactic_ids).toEqual(['TA0001', 'TA0003']);
    expect(f!.severity).toBe('medium');
    expect([f!.dst_ip, ...f!.related_ips].sort()).toEqual(['10.4.0.80', '10.4.0.81']);
    expect(f!.evidence.internal_hosts).toBe(2);
    expect(f!.evidence.established).toBe(2);
    expect(f!.evidence.service_ports).toEqual([22]);
  });

  test('a Tor exit visiting the public web server is T1190 + T1090.003 at low severity', () => {
    const f = findings.find((x) => x.src_ip === '192.0.2.99');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('10.4.0.80');
    expect(f!.technique_ids).toEqual(['T1190', 'T1090.003']);
    expect(f!.severity).toBe('low');
  });

  test('refused inbound probes, unlisted addresses, the neighbour network and mining pools stay silent', () => {
    expect(findings.map((f) => `${f.src_ip}>${f.dst_ip}`).sort()).toEqual([
      '10.4.0.10>203.0.113.66',
      '10.4.0.11>198.51.100.77',
      '10.4.0.13>203.0.113.66',
      '10.4.0.14>192.0.2.99',
      '192.0.2.99>10.4.0.80',
      '198.51.100.20>10.4.0.80',
      'fd00::14>2001:db8:bad::5',
    ]);
  });

  test('a list changed in place is re-read at the next run', async () => {
    writeFileSync(badList, `${BAD}192.0.2.200 # added later\n`);
    await detection.engine.backfill({ ...range, detectors: [ID] });
    const f = (await h.findings(ID)).find((x) => x.src_ip === '10.4.0.15');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('192.0.2.200');
    expect(f!.evidence.note).toBe('added later');
  });

  test('inbound attempts are reported at low severity when asked for', async () => {
    const d = h.detection({
      threatIntel: [badList],
      detectors: { [ID]: { params: { reportInboundAttempts: true } } },
    });
    await d.engine.backfill({ ...range, detectors: [ID] });
    const f = (await h.findings(ID)).find((x) => x.src_ip === '203.0.113.66');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('10.4.0.90');
    expect(f!.severity).toBe('low');
    expect(f!.technique_ids).toEqual(['T1190']);
    expect(f!.evidence).toMatchObject({ connections: 10, established: 0, attempts: 10 });
  });
});

describe('threat-intel sampling and biflow', () => {
  test('a sampled biflow record in mid-stream (ACKs, no SYN) with answers counts as established', async () => {
    const t0 = T0 + 30 * 60 * S;
    const ms = (us: number) => new Date(us / 1000).toISOString().replace('T', ' ').replace('Z', '');
    await h.store.client.insert({
      table: 'flows',
      format: 'JSONEachRow',
      // Its own deduplication token: the embedded session keeps the flow writer's last one.
      clickhouse_settings: { insert_deduplication_token: `test-${randomUUID()}` },
      values: [
        {
          time_received: ms(t0 + 60 * S).slice(0, 19),
          flow_start: ms(t0),
          flow_end: ms(t0 + 50 * S),
          exporter_address: '::ffff:192.0.2.251',
          src_addr: '::ffff:10.4.1.1',
          dst_addr: '::ffff:203.0.113.66',
          src_port: 41_000,
          dst_port: 443,
          proto: 6,
          tcp_flags: 0x18,
          bytes: 4 * MB,
          packets: 4_000,
          reverse_bytes: 40 * MB,
          reverse_packets: 30_000,
          sampling_rate: 1_000,
          end_reason: 2,
        },
      ],
    });
    await detection.engine.backfill({ from: t0 / 1000, to: (t0 + 300 * S) / 1000, detectors: [ID] });
    const f = (await h.findings(ID)).find((x) => x.src_ip === '10.4.1.1');
    expect(f).toBeDefined();
    expect(f!.evidence).toMatchObject({ established: 1, bytes_in: 40 * MB, sampling_rate: 1_000 });
    expect(f!.severity).toBe('critical');
  });
});
