import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../../../test/support/detection.js';
import { TrafficBuilder, UDP } from '../../../../test/support/packets.js';
import type { Finding } from '../../../findings/model.js';

// Aligned to the backfill's 300 s chunks, so that each scenario knows which window it falls in.
const T0 = Math.floor(trafficBase() / 300e6) * 300e6;
const S = 1_000_000;
const ID = 'udp-amplification';

/** `count` times spread evenly over [from, from + durationUs), epoch µs. */
function spread(from: number, durationUs: number, count: number, phase = 0): Float64Array {
  const out = new Float64Array(count);
  const step = durationUs / count;
  for (let i = 0; i < count; i++) out[i] = from + phase * step + i * step;
  return out;
}

const near = (iso: string, us: number, toleranceMs = 1_500) =>
  Math.abs(Date.parse(iso) - us / 1000) < toleranceMs;

/** UDP payload for an IPv4 packet of `ipBytes` bytes. */
const payload = (ipBytes: number) => ipBytes - 28;

let h: DetectionHarness;
let findings: Finding[];
let sampled: Finding[];

beforeAll(async () => {
  h = await DetectionHarness.open();
  const b = new TrafficBuilder();

  // Positive, victim side: for 10 s (T0+10 s to T0+20 s) 40 open resolvers send 3,000-byte DNS answers
  // (50 a second each) and 20 NTP servers 482-byte monlist answers (50 a second each) to an internal
  // host that asked none of them: the attacker spoofed its address.
  for (let r = 0; r < 40; r++) {
    b.packetTrain(
      {
        src: `203.0.113.${r + 1}`,
        dst: '10.1.1.50',
        proto: UDP,
        sport: 53,
        dport: 20_000 + r,
        payload: payload(3_000),
      },
      spread(T0 + 10 * S, 10 * S, 500, r / 40),
    );
  }
  for (let r = 0; r < 20; r++) {
    b.packetTrain(
      {
        src: `198.51.100.${r + 1}`,
        dst: '10.1.1.50',
        proto: UDP,
        sport: 123,
        dport: 80,
        payload: payload(482),
      },
      spread(T0 + 10 * S, 10 * S, 500, r / 20),
    );
  }

  // Look-alike, victim side: an internal resolver's answers from 60 authoritative servers (1,200-byte
  // DNSSEC answers) to its own queries, and its answers to 50 internal clients.
  for (let a = 0; a < 60; a++) {
    for (let q = 0; q < 40; q++) {
      b.udpExchange(
        T0 + 30 * S + q * 200_000 + a * 1_000,
        '10.1.1.53',
        `192.0.2.${a + 1}`,
        30_000 + q * 60 + a,
        53,
        80,
        1_200,
      );
    }
  }
  for (let c = 0; c < 50; c++) {
    for (let q = 0; q < 20; q++) {
      b.udpExchange(
        T0 + 30 * S + q * 400_000 + c * 2_000,
        `10.1.5.${c + 1}`,
        '10.1.1.53',
        40_000 + q,
        53,
        60,
        400,
      );
    }
  }

  // Look-alike, victim side: one client and its DNS resolver outside (600 answers of 500 bytes).
  for (let q = 0; q < 600; q++)
    b.udpExchange(T0 + 60 * S + q * 10_000, '10.1.2.2', '8.8.8.8', 50_000 + q, 53, 60, 500);

  // Look-alike, victim side: SSDP discovery. A host multicasts 30 M-SEARCHes; 40 devices answer
  // each with a unicast 350-byte response (1,200 unsolicited-looking responses from 40 "reflectors").
  for (let m = 0; m < 30; m++) {
    const t = T0 + 90 * S + m * 300_000;
    b.packet({
      t,
      src: '10.1.2.3',
      dst: '239.255.255.250',
      proto: UDP,
      sport: 51_000,
      dport: 1_900,
      payload: 150,
    });
    for (let d = 0; d < 40; d++) {
      b.packet({
        t: t + 1_000 + d * 500,
        src: `10.1.2.${100 + d}`,
        dst: '10.1.2.3',
        proto: UDP,
        sport: 1_900,
        dport: 51_000,
        payload: payload(350),
      });
    }
  }

  // Positive, reflector side: an internal NTP server answers spoofed monlist requests "from" 5
  // external victims: 250 requests of 36 bytes each, 20 answers of 482 bytes per request (12 MB).
  for (let v = 0; v < 5; v++) {
    const requests = spread(T0 + 130 * S, 10 * S, 250, v / 5);
    const victim = `198.51.100.${200 + v}`;
    b.packetTrain({ src: victim, dst: '10.1.9.9', proto: UDP, sport: 80, dport: 123, payload: 8 }, requests);
    const answers = new Float64Array(requests.length * 20);
    for (let i = 0; i < answers.length; i++) answers[i] = requests[Math.floor(i / 20)]! + 100 + (i % 20) * 50;
    b.packetTrain(
      { src: '10.1.9.9', dst: victim, proto: UDP, sport: 123, dport: 80, payload: payload(482) },
      answers,
    );
  }

  // Look-alike, reflector side: a public NTP server answering 500 external clients normally (300 polls
  // each: 11 MB each way, ratio 1).
  for (let c = 0; c < 500; c++) {
    const client = `100.64.${Math.floor(c / 250)}.${(c % 250) + 1}`;
    const polls = spread(T0 + 160 * S, 30 * S, 300, c / 500);
    b.packetTrain(
      { src: client, dst: '10.1.1.123', proto: UDP, sport: 123, dport: 123, payload: payload(76) },
      polls,
    );
    b.packetTrain(
      { src: '10.1.1.123', dst: client, proto: UDP, sport: 123, dport: 123, payload: payload(76) },
      polls.map((t) => t + 500),
    );
  }

  // Look-alike, reflector side: an open resolver answering 200 external clients (100 queries of 70
  // bytes, answers of 560 bytes: 11 MB at 8×, under the 10× threshold).
  for (let c = 0; c < 200; c++) {
    const client = `100.65.0.${c + 1}`;
    const queries = spread(T0 + 200 * S, 20 * S, 100, c / 200);
    b.packetTrain(
      { src: client, dst: '10.1.1.54', proto: UDP, sport: 33_000, dport: 53, payload: payload(70) },
      queries,
    );
    b.packetTrain(
      { src: '10.1.1.54', dst: client, proto: UDP, sport: 53, dport: 33_000, payload: payload(560) },
      queries.map((t) => t + 800),
    );
  }

  const loaded = await h.load(b);
  const { engine } = h.detection();
  await engine.backfill({ from: loaded.firstMs - 60_000, to: loaded.lastMs + 600_000, detectors: [ID] });
  findings = await h.findings(ID);

  // Sampling: softflowd -r cannot sample, so these records are inserted as sampling exporters send
  // them, 20 minutes later: 10 reflectors send 20 records of 1,000-byte DNS answers each (100 packets
  // per record, scaled) to each of two hosts, one exported at 1:100 and one unsampled.
  const base = T0 + 1_200 * S;
  const time = (us: number) => new Date(us / 1000).toISOString().replace('T', ' ').replace('Z', '');
  const rows: object[] = [];
  for (const [dst, rate] of [
    ['10.7.0.5', 100],
    ['10.7.0.6', 1],
  ] as const) {
    for (let r = 0; r < 10; r++) {
      for (let i = 0; i < 20; i++) {
        const t = base + 10 * S + i * 400_000 + r * 1_000;
        rows.push({
          time_received: time(base + 30 * S).slice(0, 19),
          flow_start: time(t),
          flow_end: time(t),
          exporter_address: '::ffff:192.0.2.251',
          src_addr: `::ffff:203.0.113.${r + 100}`,
          dst_addr: `::ffff:${dst}`,
          src_port: 53,
          dst_port: 7_000 + i,
          proto: 17,
          bytes: 1_000 * 100,
          packets: 100,
          sampling_rate: rate,
        });
      }
    }
  }
  // Look-alike under 1:100 sampling: a resolver whose sampled answers (30 servers) and sampled queries
  // (to 60 other servers) never pair up. Each answering server looks unsolicited, but the host asks
  // for an eighth of what it receives (7.5× < 10×): a resolver, not a victim.
  const record = (t: number, src: string, dst: string, sport: number, dport: number, size: number) => ({
    time_received: time(base + 30 * S).slice(0, 19),
    flow_start: time(t),
    flow_end: time(t),
    exporter_address: '::ffff:192.0.2.251',
    src_addr: `::ffff:${src}`,
    dst_addr: `::ffff:${dst}`,
    src_port: sport,
    dst_port: dport,
    proto: 17,
    bytes: size * 100,
    packets: 100,
    sampling_rate: 100,
  });
  for (let r = 0; r < 30; r++)
    rows.push(record(base + 10 * S + r * 100_000, `192.0.2.${r + 1}`, '10.7.0.7', 53, 9_000 + r, 1_200));
  for (let q = 0; q < 60; q++)
    rows.push(record(base + 10 * S + q * 50_000, '10.7.0.7', `192.0.2.${q + 100}`, 9_100 + q, 53, 80));
  // With its own deduplication token: on the embedded store the collector's last token stays set in
  // the session, and an insert without one would be dropped as a replay of that batch.
  await h.store.client.insert({
    table: 'flows',
    values: rows,
    format: 'JSONEachRow',
    clickhouse_settings: { insert_deduplication_token: `${ID}-sampled` },
  });
  await engine.backfill({ from: base / 1000, to: base / 1000 + 300_000, detectors: [ID] });
  sampled = (await h.findings(ID)).filter((f) => f.dst_ip?.startsWith('10.7.'));
}, 120_000);

afterAll(async () => {
  await h?.close();
});

describe(ID, () => {
  test('victim side: unsolicited DNS and NTP answers from 60 reflectors', () => {
    const f = findings.find((x) => x.dst_ip === '10.1.1.50');
    expect(f).toBeDefined();
    expect(f!.technique_ids).toEqual(['T1498.002']);
    expect(f!.tactic_ids).toEqual(['TA0040']);
    expect(f!.src_ip).toBeNull();
    expect(f!.evidence.role).toBe('victim');
    expect(f!.evidence.reflectors).toBe(60);
    expect(f!.evidence.solicited_reflectors).toBe(0);
    expect(f!.evidence.request_bytes).toBe(0);
    expect(f!.evidence.unsolicited_packets).toBe(30_000);
    expect(f!.evidence.unsolicited_bytes).toBe(40 * 500 * 3_000 + 20 * 500 * 482);
    expect(f!.evidence.bytes_per_packet).toBe(Math.round((60_000_000 + 4_820_000) / 30_000));
    expect(f!.evidence.services).toEqual([
      { port: 53, service: 'DNS', bytes: 60_000_000, reflectors: 40 },
      { port: 123, service: 'NTP', bytes: 4_820_000, reflectors: 20 },
    ]);
    // 64.8 MB in 10 s: about 52 Mbit/s.
    expect(f!.evidence.average_mbps).toBeGreaterThan(50);
    expect(f!.evidence.average_mbps).toBeLessThan(54);
    expect(f!.severity).toBe('medium');
    expect(f!.evidence.threshold_reflectors).toBe(20);
    expect(f!.related_ips).toHaveLength(20);
    expect(f!.related_ips.every((ip) => ip.startsWith('203.0.113.'))).toBe(true);
    expect(f!.flows).toBe(60);
    expect(f!.packets).toBe(30_000);
    expect(near(f!.first_seen, T0 + 10 * S)).toBe(true);
    expect(near(f!.last_seen, T0 + 20 * S)).toBe(true);
    expect(f!.title).toMatch(/^UDP amplification attack on 10\.1\.1\.50: 60 reflectors \(DNS, NTP\)/);
  });

  test('reflector side: an internal NTP server amplifying spoofed monlist requests', () => {
    const f = findings.find((x) => x.src_ip === '10.1.9.9');
    expect(f).toBeDefined();
    expect(f!.technique_ids).toEqual(['T1498.002']);
    expect(f!.evidence.role).toBe('reflector');
    expect(f!.evidence.service).toBe('NTP');
    expect(f!.evidence.targets).toBe(5);
    expect(f!.evidence.response_bytes).toBe(5 * 250 * 20 * 482);
    expect(f!.evidence.request_bytes).toBe(5 * 250 * 36);
    expect(f!.evidence.amplification).toBeCloseTo((20 * 482) / 36, 1);
    expect(f!.evidence.threshold_amplification).toBe(10);
    expect(f!.severity).toBe('high');
    expect(f!.dst_ip).toBeNull();
    expect([...f!.related_ips].sort()).toEqual([
      '198.51.100.200',
      '198.51.100.201',
      '198.51.100.202',
      '198.51.100.203',
      '198.51.100.204',
    ]);
    expect(f!.flows).toBe(5);
    expect(near(f!.first_seen, T0 + 130 * S)).toBe(true);
    expect(near(f!.last_seen, T0 + 140 * S)).toBe(true);
    expect(f!.title).toMatch(
      /^10\.1\.9\.9 is used as a NTP amplifier \(UDP 123\): 5 external targets, 268× amplification/,
    );
  });

  test('a resolver, a DNS client, SSDP discovery, an NTP server and an open resolver stay silent', () => {
    expect(findings.map((f) => f.dst_ip ?? f.src_ip).sort()).toEqual(['10.1.1.50', '10.1.9.9']);
  });

  test('sampling: the reflectors threshold is divided by the rate, down to its floor; a sampled resolver stays silent', () => {
    expect(sampled.map((f) => f.dst_ip)).toEqual(['10.7.0.5']);
    const f = sampled[0]!;
    expect(f.evidence.sampling_rate).toBe(100);
    // 20 reflectors / 100, raised to the floor of 3: the 10 seen are enough; unsampled they are not.
    expect(f.evidence.threshold_reflectors).toBe(3);
    expect(f.evidence.reflectors).toBe(10);
    expect(f.evidence.unsolicited_packets).toBe(20_000);
  });
});
