import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../../../test/support/detection.js';
import { TrafficBuilder } from '../../../../test/support/packets.js';
import type { Finding } from '../../../findings/model.js';

const T0 = trafficBase();
const S = 1_000_000;

let h: DetectionHarness;
let findings: Finding[];
let range: { from: number; to: number };

beforeAll(async () => {
  h = await DetectionHarness.open();
  const b = new TrafficBuilder();
  // Positive 1: an Internet host half-open scans ports 1-200 of an internal server in 40 s; 22, 80 and 139
  // are open.
  for (let port = 1; port <= 200; port++) {
    const answer = [22, 80, 139].includes(port) ? 'synack' : port % 3 === 0 ? 'none' : 'rst';
    b.synProbe(T0 + port * 200_000, '198.51.100.66', '10.1.1.10', 40_000 + (port % 7), port, answer);
  }
  // Positive 2: an internal IPv6 host probes 41 ports of another, refused.
  for (let port = 20; port <= 60; port++)
    b.synProbe(T0 + 60 * S + port * 100_000, 'fd00::50', 'fd00::20', 51_000, port, 'rst');
  // Benign: a client opens 40 complete connections to 40 ports of one server (passive FTP data).
  for (let i = 0; i < 40; i++) {
    b.tcpSession({
      t: T0 + 5 * S + i * 500_000,
      client: '10.1.2.30',
      server: '192.0.2.21',
      sport: 45_000 + i,
      dport: 30_000 + i,
      exchanges: [{ up: 100, down: 40_000 }],
    });
  }
  // Benign: a client retries one refused port 60 times (one port, however many attempts).
  for (let i = 0; i < 60; i++)
    b.synProbe(T0 + 10 * S + i * 300_000, '10.1.2.31', '192.0.2.22', 46_000 + i, 8443, 'rst');
  // Benign: backscatter, a flooded server's SYN-ACKs to spoofed sources' many ports.
  for (let i = 0; i < 80; i++) {
    b.packet({
      t: T0 + 20 * S + i * 10_000,
      src: '192.0.2.80',
      dst: '10.1.3.5',
      proto: 6,
      sport: 80,
      dport: 1024 + i,
      flags: 0x12,
    });
  }
  // Benign: the vulnerability scanner, allowlisted, scans the same server.
  for (let port = 1; port <= 100; port++)
    b.synProbe(T0 + 90 * S + port * 50_000, '10.9.9.9', '10.1.1.10', 50_000, port, 'rst');
  const loaded = await h.load(b);
  range = { from: loaded.firstMs - 60_000, to: loaded.lastMs + 600_000 };
  const { engine } = h.detection({
    detectors: { 'vertical-port-scan': { allowlist: { src: ['10.9.9.9/32'] } } },
  });
  await engine.backfill({ from: range.from, to: range.to, detectors: ['vertical-port-scan'] });
  findings = await h.findings('vertical-port-scan');
}, 120_000);

afterAll(async () => {
  await h?.close();
});

describe('vertical-port-scan', () => {
  test('an external half-open scan is one finding with the ports, open ports and traffic times', () => {
    const f = findings.find((x) => x.src_ip === '198.51.100.66');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('10.1.1.10');
    expect(f!.technique_ids).toEqual(['T1595.001']);
    expect(f!.tactic_ids).toEqual(['TA0043']);
    expect(f!.severity).toBe('low');
    expect(f!.evidence.distinct_ports).toBe(200);
    expect(f!.evidence.open_ports).toEqual([22, 80, 139]);
    expect(f!.flows).toBe(200);
    // Traffic time, not run time: the first and last probe.
    expect(Math.abs(Date.parse(f!.first_seen) - (T0 + 200_000) / 1000)).toBeLessThan(1500);
    expect(Math.abs(Date.parse(f!.last_seen) - (T0 + 200 * 200_000) / 1000)).toBeLessThan(1500);
    expect(f!.title).toBe('External port scan of 10.1.1.10 by 198.51.100.66: 200 TCP ports probed');
  });

  test('an internal IPv6 scan maps to T1046 at medium severity', () => {
    const f = findings.find((x) => x.src_ip === 'fd00::50');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('fd00::20');
    expect(f!.technique_ids).toEqual(['T1046']);
    expect(f!.severity).toBe('medium');
    expect(f!.evidence.distinct_ports).toBe(41);
  });

  test('completed connections, retries of one port, backscatter and the allowlisted scanner stay silent', () => {
    expect(findings.map((f) => f.src_ip).sort()).toEqual(['198.51.100.66', 'fd00::50']);
  });
});
