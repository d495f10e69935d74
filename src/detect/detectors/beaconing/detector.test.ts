import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../../../test/support/detection.js';
import { ACK, PSH, TCP, TrafficBuilder } from '../../../../test/support/packets.js';
import type { Finding } from '../../../findings/model.js';
import { queryRows } from '../../../storage/clickhouse.js';

// A day of traffic: the beacon detector reads 24 h of context.
const T0 = trafficBase(26 * 60);
const S = 1_000_000;
const MIN = 60 * S;
const HOUR = 60 * MIN;

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32). */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

let h: DetectionHarness;
let findings: Finding[];
/** Records of the day-long SSH session ended by active timeout (client direction). */
let longRecords = 0;

const INTERNAL = Array.from({ length: 12 }, (_, i) => `10.1.0.${i + 1}`);

beforeAll(async () => {
  h = await DetectionHarness.open();
  const b = new TrafficBuilder();
  const rnd = random(7);
  let port = 20_000;
  const nextPort = (): number => {
    port = port >= 60_000 ? 20_000 : port + 1;
    return port;
  };
  // Background: every internal host browses a few sites, so that the network has 12 internal clients.
  for (const [i, host] of INTERNAL.entries()) {
    for (let k = 0; k < 3; k++) {
      b.tcpSession({
        t: T0 + (i * 3 + k) * 7 * MIN,
        client: host,
        server: `198.51.100.${10 + k}`,
        sport: nextPort(),
        dport: 443,
        exchanges: [{ up: 600, down: 30_000 }],
      });
    }
  }
  // Positive 1: a perfect beacon, 10.1.0.5 → 203.0.113.50:443 every 5 min for 24 h, same sizes.
  for (let t = T0; t < T0 + 24 * HOUR; t += 5 * MIN) {
    b.tcpSession({
      t,
      client: '10.1.0.5',
      server: '203.0.113.50',
      sport: nextPort(),
      dport: 443,
      exchanges: [{ up: 420, down: 1_200 }],
    });
  }
  // Positive 2: a heavily jittered beacon (sleep 10 min ± 70 %) whose request sizes vary with tasking.
  for (let t = T0 + 10 * S; t < T0 + 24 * HOUR; t += Math.round(10 * MIN * (0.3 + 1.4 * rnd()))) {
    b.tcpSession({
      t,
      client: '10.1.0.6',
      server: '198.51.100.77',
      sport: nextPort(),
      dport: 8080,
      exchanges: [{ up: 300 + Math.round(1_500 * rnd()), down: 900 }],
    });
  }
  // Look-alike: the EDR agent on 7 of the 12 hosts checks in with its cloud every 5 min, identically.
  for (const host of INTERNAL.slice(0, 7)) {
    for (let t = T0 + 30 * S; t < T0 + 24 * HOUR; t += 5 * MIN) {
      b.tcpSession({
        t,
        client: host,
        server: '192.0.2.200',
        sport: nextPort(),
        dport: 443,
        exchanges: [{ up: 700, down: 500 }],
      });
    }
  }
  // Look-alike: a person browsing one site in bursts at irregular times during a working day.
  for (let burst = 0; burst < 14; burst++) {
    const start = T0 + 8 * HOUR + Math.round(rnd() * 9 * HOUR);
    const pages = 1 + Math.floor(rnd() * 6);
    for (let k = 0; k < pages; k++) {
      b.tcpSession({
        t: start + Math.round(rnd() * 4 * MIN),
        client: '10.1.0.7',
        server: '203.0.113.80',
        sport: nextPort(),
        dport: 443,
        exchanges: [{ up: 400 + Math.round(rnd() * 2_000), down: 5_000 + Math.round(rnd() * 80_000) }],
      });
    }
  }
  // Look-alike: a perfect beacon to a destination the configuration allowlists.
  for (let t = T0 + 50 * S; t < T0 + 24 * HOUR; t += 5 * MIN) {
    b.tcpSession({
      t,
      client: '10.1.0.9',
      server: '192.0.2.99',
      sport: nextPort(),
      dport: 443,
      exchanges: [{ up: 300, down: 300 }],
    });
  }
  // Positive 3: a strobe, 2,500 UDP exchanges to one server within an hour (one every 1.44 s).
  for (let i = 0; i < 2_500; i++) {
    b.udpExchange(T0 + 5 * HOUR + i * 1_440_000, '10.1.0.10', '198.51.100.200', 30_000 + i, 9_999, 60, 60);
  }
  // Look-alike: a web page polling its server every 7 s for a minute: regular, but brief. After the
  // day the other tests read, so that a backfill can look at it alone (as a short investigation would).
  for (let i = 0; i < 8; i++) {
    b.tcpSession({
      t: T0 + 25 * HOUR + i * 7 * S,
      client: '10.1.0.9',
      server: '198.51.100.177',
      sport: nextPort(),
      dport: 443,
      exchanges: [{ up: 500, down: 900 }],
    });
  }
  // Look-alike: a resolver forwarding its clients' cache misses upstream, a Poisson stream (exponential
  // gaps, mean 60 s) all day: even in time, covering every hour, but not regular.
  const poisson = random(11);
  for (let t = T0; t < T0 + 24 * HOUR; t += Math.max(S, Math.round(-Math.log(1 - poisson()) * 60 * S))) {
    b.udpExchange(t, '10.1.0.12', '198.51.100.53', nextPort(), 53, 40 + Math.floor(poisson() * 40), 120);
  }
  await h.load(b);

  // Look-alike: one SSH session that lasts the whole day with a keep-alive every minute; the exporter
  // splits it by active timeout (30 min) into regular records, which must stay one connection.
  const long = new TrafficBuilder();
  long.tcpSession({
    t: T0 + 20 * S,
    client: '10.1.0.8',
    server: '203.0.113.90',
    sport: 41_000,
    dport: 22,
    exchanges: [{ up: 200, down: 200 }],
    close: 'none',
  });
  for (let t = T0 + 20 * S + MIN; t < T0 + 24 * HOUR; t += MIN) {
    const c = { proto: TCP, sport: 41_000, dport: 22, flags: PSH | ACK, payload: 48 };
    long.packet({ ...c, t, src: '10.1.0.8', dst: '203.0.113.90' });
    long.packet({ ...c, t: t + 30_000, src: '203.0.113.90', dst: '10.1.0.8', sport: 22, dport: 41_000 });
  }
  // A small flow table makes softflowd check its timers every 16 packets (in -r mode it checks them
  // only between batches of that many packets).
  await h.load(long, { timeouts: { maxlife: 1_800 }, maxFlows: 16 });
  const [split] = await queryRows<{ n: number }>(
    h.store,
    `SELECT count() AS n FROM flows WHERE src_addr = toIPv6('::ffff:10.1.0.8') AND end_reason = 2`,
  );
  longRecords = split!.n;

  // Sampling: the strobe again from another host as a 1:10 sampled export would show it: a tenth of its
  // connections, with bytes and packets scaled up by the rate (the decoder's convention).
  const strobe = await queryRows<Record<string, unknown>>(
    h.store,
    `SELECT * FROM flows
     WHERE (src_addr = toIPv6('::ffff:10.1.0.10') AND src_port % 10 = 0)
        OR (dst_addr = toIPv6('::ffff:10.1.0.10') AND dst_port % 10 = 0)`,
  );
  const moved = (a: unknown): unknown => (a === '::ffff:10.1.0.10' ? '::ffff:10.1.0.11' : a);
  // Our own deduplication token: the embedded session still holds the one of the importer's last insert.
  await h.store.client.insert({
    table: 'flows',
    format: 'JSONEachRow',
    clickhouse_settings: { insert_deduplication_token: 'beaconing-sampled-strobe' },
    values: strobe.map((r) => ({
      ...r,
      src_addr: moved(r.src_addr),
      dst_addr: moved(r.dst_addr),
      bytes: Number(r.bytes) * 10,
      packets: Number(r.packets) * 10,
      sampling_rate: 10,
    })),
  });

  const { engine } = h.detection({
    detectors: {
      beaconing: { params: { strobeConnections: 2_000 }, allowlist: { dst: ['192.0.2.99/32'] } },
    },
  });
  await engine.backfill({
    from: T0 / 1000 - 60_000,
    to: T0 / 1000 + 24 * 3_600_000 + 600_000,
    detectors: ['beaconing'],
  });
  findings = await h.findings('beaconing');
}, 300_000);

afterAll(async () => {
  await h?.close();
});

const near = (iso: string, us: number, toleranceMs = 2_000): boolean =>
  Math.abs(Date.parse(iso) - us / 1000) < toleranceMs;

describe('beaconing', () => {
  test('a perfect 5-minute beacon scores high, with its interval, size and traffic times', () => {
    const f = findings.find((x) => x.src_ip === '10.1.0.5');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('203.0.113.50');
    expect(f!.technique_ids).toEqual(['T1071']);
    expect(f!.tactic_ids).toEqual(['TA0011']);
    expect(f!.severity).toBe('high');
    expect(f!.evidence.kind).toBe('beacon');
    expect(f!.evidence.score).toBeGreaterThanOrEqual(0.9);
    expect(f!.evidence.interval_median_seconds).toBe(300);
    expect(f!.evidence.connections).toBe(288);
    expect(f!.evidence.server_ports).toEqual([443]);
    expect(f!.evidence.threshold_score).toBe(0.7);
    expect(f!.flows).toBe(288 * 2);
    expect(near(f!.first_seen, T0)).toBe(true);
    expect(near(f!.last_seen, T0 + 24 * HOUR - 5 * MIN)).toBe(true);
    expect(f!.title).toContain('203.0.113.50');
  });

  test('a jittered beacon with varying sizes still scores as a beacon, one band lower', () => {
    const f = findings.find((x) => x.src_ip === '10.1.0.6');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('198.51.100.77');
    expect(f!.severity).toBe('medium');
    const score = Number(f!.evidence.score);
    expect(score).toBeGreaterThanOrEqual(0.7);
    expect(score).toBeLessThan(0.9);
    expect(Number(f!.evidence.interval_median_seconds)).toBeGreaterThan(480);
    expect(Number(f!.evidence.interval_median_seconds)).toBeLessThan(720);
  });

  test('a strobe is reported as a strobe with its connection count', () => {
    const f = findings.find((x) => x.src_ip === '10.1.0.10');
    expect(f).toBeDefined();
    expect(f!.dst_ip).toBe('198.51.100.200');
    expect(f!.evidence.kind).toBe('strobe');
    expect(f!.evidence.connections).toBe(2_500);
    expect(f!.evidence.threshold_strobe_per_day).toBe(2_000);
    // RITA's per-day threshold, prorated to the span of data the window saw (at least an hour).
    const span = Number(f!.evidence.span_seconds);
    expect(f!.evidence.threshold_strobe_connections).toBe(
      Math.ceil((2_000 * Math.max(span, 3_600)) / 86_400),
    );
    expect(f!.severity).toBe('medium');
    expect(f!.technique_ids).toEqual(['T1071']);
    expect(near(f!.first_seen, T0 + 5 * HOUR)).toBe(true);
    expect(near(f!.last_seen, T0 + 5 * HOUR + 2_499 * 1_440_000)).toBe(true);
  });

  test('under 1:10 sampling the strobe threshold is divided by the rate', () => {
    const f = findings.find((x) => x.src_ip === '10.1.0.11');
    expect(f).toBeDefined();
    expect(f!.evidence.kind).toBe('strobe');
    expect(f!.evidence.connections).toBe(250);
    expect(f!.evidence.sampling_rate).toBe(10);
    const span = Number(f!.evidence.span_seconds);
    const unsampled = Math.ceil((2_000 * Math.max(span, 3_600)) / 86_400);
    expect(250).toBeLessThan(unsampled);
    expect(f!.evidence.threshold_strobe_connections).toBe(Math.ceil(unsampled / 10));
  });

  test('the EDR agent many hosts share, the human, the split long session and the allowlisted beacon stay silent', () => {
    // The long session really arrived as a regular series of records, about one per 30 min.
    expect(longRecords).toBeGreaterThan(30);
    expect(findings.map((f) => f.src_ip).sort()).toEqual(['10.1.0.10', '10.1.0.11', '10.1.0.5', '10.1.0.6']);
    expect(findings.some((f) => f.dst_ip === '192.0.2.200')).toBe(false);
  });

  test('with prevalence set to demote, the shared EDR beacon is reported 0.15 lower; the look-alikes stay below even the low band', async () => {
    const { engine } = h.detection({
      detectors: {
        beaconing: { params: { prevalenceAction: 'demote', minScore: 0.5, strobeConnections: 2_000 } },
      },
    });
    await engine.backfill({
      from: T0 / 1000 - 60_000,
      to: T0 / 1000 + 24 * 3_600_000 + 600_000,
      detectors: ['beaconing'],
    });
    const all = await h.findings('beaconing');
    const edr = all.filter((f) => f.dst_ip === '192.0.2.200');
    expect(edr.map((f) => f.src_ip).sort()).toEqual(INTERNAL.slice(0, 7).sort());
    for (const f of edr) {
      expect(f.evidence.raw_score).toBe(1);
      expect(f.evidence.score).toBe(0.85);
      expect(f.severity).toBe('medium');
      expect(f.evidence.prevalence).toMatchObject({
        prevalent: true,
        server_internal_clients: 7,
        internal_clients: 12,
      });
    }
    // Without the allowlist the beacon to 192.0.2.99 appears too; the human and the long session never.
    expect(all.some((f) => f.dst_ip === '192.0.2.99')).toBe(true);
    expect(all.some((f) => f.dst_ip === '203.0.113.80' || f.dst_ip === '203.0.113.90')).toBe(false);
  });

  test('regular but brief polling (8 connections in a minute) is not a beacon; without the span rule it would be', async () => {
    const around = { from: (T0 + 25 * HOUR) / 1000 - 60_000, to: (T0 + 25 * HOUR) / 1000 + 120_000 };
    // A low score bar, so that only the span rule stands between the polling and a finding.
    const lenient = { minScore: 0.3 };
    await h
      .detection({ detectors: { beaconing: { params: lenient } } })
      .engine.backfill({ ...around, detectors: ['beaconing'] });
    expect((await h.findings('beaconing')).some((f) => f.dst_ip === '198.51.100.177')).toBe(false);
    const { engine } = h.detection({
      detectors: { beaconing: { params: { ...lenient, minSpanSeconds: 0 } } },
    });
    await engine.backfill({ ...around, detectors: ['beaconing'] });
    const polling = (await h.findings('beaconing')).find((f) => f.dst_ip === '198.51.100.177');
    expect(polling).toBeDefined();
    expect(polling!.evidence.pair_span_seconds).toBeLessThan(60);
  });

  test("a resolver's Poisson stream of upstream lookups is not a beacon, though RITA's score alone would say so", async () => {
    expect(findings.some((f) => f.dst_ip === '198.51.100.53')).toBe(false);
    const { engine } = h.detection({
      detectors: { beaconing: { params: { strobeConnections: 2_000, maxIntervalDispersion: 10 } } },
    });
    await engine.backfill({
      from: T0 / 1000 - 60_000,
      to: T0 / 1000 + 24 * 3_600_000 + 600_000,
      detectors: ['beaconing'],
    });
    const resolver = (await h.findings('beaconing')).find((f) => f.dst_ip === '198.51.100.53');
    expect(resolver).toBeDefined();
    expect(resolver!.evidence.score).toBeGreaterThanOrEqual(0.7);
    expect(resolver!.evidence.interval_dispersion).toBeGreaterThan(0.5);
  });
});
