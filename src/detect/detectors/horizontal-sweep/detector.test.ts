import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../../../test/support/detection.js';
import { TrafficBuilder } from '../../../../test/support/packets.js';
import type { Finding } from '../../../findings/model.js';

const T0 = trafficBase();
const S = 1_000_000;
const ID = 'horizontal-sweep';

let h: DetectionHarness;
let findings: Finding[];

/**
 * Turns the flows one exporter sent into what a 1:`rate` sampling exporter would have sent: the same
 * records (the traffic builder only scripted the packets such an exporter keeps), with bytes and
 * packets scaled and the rate recorded, as the decoder stores sampled flows. The INSERT carries its own
 * deduplication token: the embedded session keeps the last one the flow writer set, and flows
 * deduplicates inserts by token, so without one this insert would be silently dropped.
 */
async function resample(exporter: string, rate: number): Promise<void> {
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

const ip = (prefix: string, i: number) => `${prefix}.${Math.floor(i / 250)}.${(i % 250) + 1}`;

beforeAll(async () => {
  h = await DetectionHarness.open();
  const b = new TrafficBuilder();
  // Positive 1: an Internet host sweeps port 22 over 60 internal hosts (5 answer) and port 23 over 40,
  // in 2 minutes, half-open: refused, unanswered, or SYN-ACK then reset.
  for (let i = 0; i < 60; i++) {
    const answer = i % 12 === 0 ? 'synack' : i % 2 === 0 ? 'rst' : 'none';
    b.synProbe(T0 + i * 1_000_000, '203.0.113.50', ip('10.2', i), 41_000 + i, 22, answer);
    if (i < 40)
      b.synProbe(T0 + i * 1_000_000 + 500_000, '203.0.113.50', ip('10.2', i), 42_000 + i, 23, 'none');
  }
  // Positive 2: an internal host pings 80 addresses once each (fping-like: silent ones retried 3
  // times); 20 answer.
  for (let i = 0; i < 80; i++) {
    const alive = i % 4 === 0;
    b.echo(T0 + 30 * S + i * 200_000, '10.3.0.5', ip('10.3', i + 250), 900, 1, 56, alive);
    if (!alive)
      for (let r = 1; r <= 3; r++)
        b.echo(
          T0 + 30 * S + i * 200_000 + r * 50_000,
          '10.3.0.5',
          ip('10.3', i + 250),
          900,
          1 + r,
          56,
          false,
        );
  }
  // Positive 3: an internal IPv6 host probes SMB on 30 neighbours, nothing answers.
  for (let i = 0; i < 30; i++)
    b.synProbe(T0 + 60 * S + i * 300_000, 'fd00::77', `fd00::1:${i + 1}`, 50_000 + i, 445, 'none');

  // Benign: a monitoring system opens a complete HTTPS check to 40 hosts every minute for 5 minutes.
  for (let round = 0; round < 5; round++)
    for (let i = 0; i < 40; i++)
      b.tcpSession({
        t: T0 + 10 * S + round * 60 * S + i * 100_000,
        client: '10.4.0.9',
        server: ip('10.6', i),
        sport: 30_000 + round * 100 + i,
        dport: 443,
        exchanges: [{ up: 300, down: 1_500 }],
      });
  // Benign: a ping monitor sends 3 echoes to each of 40 hosts every minute (all answer).
  for (let round = 0; round < 5; round++)
    for (let i = 0; i < 40; i++)
      for (let k = 0; k < 3; k++)
        b.echo(
          T0 + 12 * S + round * 60 * S + i * 100_000 + k * 1_000,
          '10.4.0.10',
          ip('10.6', i),
          700 + i,
          round * 3 + k,
          56,
        );
  // Benign: a DNS server answers 60 clients, an NTP server 40 (the many-destination side is the server).
  for (let i = 0; i < 60; i++)
    b.udpExchange(T0 + 15 * S + i * 100_000, ip('10.7', i), '10.4.0.53', 40_000 + i, 53, 40, 120);
  for (let i = 0; i < 40; i++)
    b.udpExchange(T0 + 16 * S + i * 100_000, ip('10.7', i), '10.4.0.123', 123, 123, 48, 48);
  // Benign: backscatter, SYN-ACKs and RSTs of a flooded server to 80 spoofed sources.
  for (let i = 0; i < 80; i++) {
    const to = `198.18.${i}.${(i * 7) % 250}`;
    b.packet({
      t: T0 + 20 * S + i * 10_000,
      src: '10.8.0.80',
      dst: to,
      proto: 6,
      sport: 80,
      dport: 1024 + i,
      flags: 0x12,
    });
    b.packet({
      t: T0 + 20 * S + i * 10_000 + 5_000,
      src: '10.8.0.80',
      dst: to,
      proto: 6,
      sport: 80,
      dport: 1024 + i,
      flags: 0x04,
    });
  }
  // Benign: 20 hosts on RDP from the Internet, below the threshold of 25.
  for (let i = 0; i < 20; i++)
    b.synProbe(T0 + 100 * S + i * 500_000, '203.0.113.60', ip('10.9', i), 43_000 + i, 3389, 'rst');
  // Benign: the inventory scanner, allowlisted.
  for (let i = 0; i < 100; i++)
    b.synProbe(T0 + 130 * S + i * 100_000, '10.99.0.1', ip('10.2', i), 44_000 + i, 80, 'rst');
  await h.load(b);

  // Sampled 1:10: of a 100-host sweep on 8080 the exporter kept 10 probes (a finding: 25 / 10 is below
  // the floor of 5, so 10 hosts cross it); of a 40-host sweep on 8443 it kept 4 (below the floor: silent).
  const s = new TrafficBuilder();
  for (let i = 0; i < 10; i++)
    s.synProbe(T0 + 200 * S + i * 3 * S, '198.51.100.77', ip('10.10', i * 10), 45_000 + i, 8080, 'none');
  for (let i = 0; i < 4; i++)
    s.synProbe(T0 + 200 * S + i * 3 * S, '198.51.100.78', ip('10.10', i * 10), 46_000 + i, 8443, 'none');
  const sampled = await h.load(s, { exporter: '192.0.2.251' });
  await resample('192.0.2.251', 10);

  const { engine } = h.detection({ detectors: { [ID]: { allowlist: { src: ['10.99.0.0/24'] } } } });
  await engine.backfill({ from: T0 / 1000 - 60_000, to: sampled.lastMs + 600_000, detectors: [ID] });
  findings = await h.findings(ID);
}, 120_000);

afterAll(async () => {
  await h?.close();
});

const near = (iso: string, us: number) => Math.abs(Date.parse(iso) - us / 1000);

describe('horizontal-sweep', () => {
  test('an external SYN sweep of two ports is one finding, T1595.001, with per-port hosts and the answers', () => {
    const f = findings.find((x) => x.src_ip === '203.0.113.50');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBeNull();
    expect(f!.technique_ids).toEqual(['T1595.001']);
    expect(f!.tactic_ids).toEqual(['TA0043']);
    expect(f!.severity).toBe('low');
    expect(f!.evidence.protocol).toBe('tcp');
    expect(f!.evidence.distinct_hosts).toBe(60);
    expect(f!.evidence.ports).toEqual([22, 23]);
    expect(f!.evidence.per_port).toEqual([
      { port: 22, hosts: 60, answered: 5 },
      { port: 23, hosts: 40, answered: 0 },
    ]);
    expect(f!.evidence.threshold_hosts).toBe(25);
    expect(f!.evidence.scanner_internal).toBe(false);
    expect(f!.flows).toBe(100);
    expect(f!.related_ips).toHaveLength(50);
    expect(f!.related_ips.every((a) => a.startsWith('10.2.0.'))).toBe(true);
    expect(near(f!.first_seen, T0)).toBeLessThan(1500);
    expect(near(f!.last_seen, T0 + 59 * S)).toBeLessThan(1500);
    expect(f!.title).toBe('External TCP sweep by 203.0.113.50: ports 22, 23 probed on 60 hosts');
  });

  test('an internal ping sweep maps to T1018 at medium severity and counts answered hosts', () => {
    const f = findings.find((x) => x.src_ip === '10.3.0.5');
    expect(f).toBeDefined();
    expect(f!.technique_ids).toEqual(['T1018']);
    expect(f!.tactic_ids).toEqual(['TA0007']);
    expect(f!.severity).toBe('medium');
    expect(f!.evidence.protocol).toBe('icmp');
    expect(f!.evidence.distinct_hosts).toBe(80);
    expect(f!.evidence.per_port).toEqual([{ port: 0, hosts: 80, answered: 20 }]);
    expect(f!.evidence.ports).toEqual([]);
    expect(f!.title).toBe('Ping sweep by 10.3.0.5: 80 hosts pinged (20 answered)');
    expect(near(f!.first_seen, T0 + 30 * S)).toBeLessThan(1500);
    expect(near(f!.last_seen, T0 + 30 * S + 79 * 200_000 + 150_000)).toBeLessThan(1500);
  });

  test('an internal IPv6 SMB sweep maps to T1046', () => {
    const f = findings.find((x) => x.src_ip === 'fd00::77');
    expect(f).toBeDefined();
    expect(f!.technique_ids).toEqual(['T1046']);
    expect(f!.severity).toBe('medium');
    expect(f!.evidence.distinct_hosts).toBe(30);
    expect(f!.evidence.ports).toEqual([445]);
    expect(f!.related_ips).toContain('fd00::1:1');
  });

  test('sampled flows: the host threshold is divided by the rate, down to its floor', () => {
    const f = findings.find((x) => x.src_ip === '198.51.100.77');
    expect(f).toBeDefined();
    expect(f!.evidence.sampling_rate).toBe(10);
    expect(f!.evidence.threshold_hosts).toBe(5);
    expect(f!.evidence.distinct_hosts).toBe(10);
    // bytes are the sampled estimate: 10 SYNs of 40 bytes, times 10.
    expect(f!.bytes).toBe(4_000);
    expect(findings.find((x) => x.src_ip === '198.51.100.78')).toBeUndefined();
  });

  test('completed checks, ping monitors, DNS/NTP servers, backscatter, small and allowlisted sweeps stay silent', () => {
    expect(findings.map((f) => f.src_ip).sort()).toEqual([
      '10.3.0.5',
      '198.51.100.77',
      '203.0.113.50',
      'fd00::77',
    ]);
  });

  test('the ping monitor is held back by maxEchoPerHost alone: allowed 20 echoes per host, it is a sweep', async () => {
    const { engine } = h.detection({ detectors: { [ID]: { params: { maxEchoPerHost: 20 } } } });
    await engine.backfill({ from: T0 / 1000, to: T0 / 1000 + 600_000, detectors: [ID] });
    const f = (await h.findings(ID)).find((x) => x.src_ip === '10.4.0.10');
    expect(f).toBeDefined();
    expect(f!.evidence.distinct_hosts).toBe(40);
    expect(f!.evidence.max_echo_per_host).toBe(20);
  });
});
