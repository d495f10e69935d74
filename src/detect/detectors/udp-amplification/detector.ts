import { z } from 'zod';
import type { Severity } from '../../../findings/model.js';
import type { Observation } from '../../detector.js';
import { defineDetector, loadSql } from '../../detector.js';
import { formatQuantity, maxNumber } from '../../evidence.js';
import { displayAddress } from '../../networks.js';

const VICTIM = loadSql(import.meta.url, 'query.sql');
const REFLECTOR = loadSql(import.meta.url, 'reflector.sql');

interface VictimRow {
  victim: string;
  victim_internal: number;
  sampling: number;
  thr_reflectors: number;
  reflectors: number;
  solicited_reflectors: number;
  unsolicited_packets: number;
  unsolicited_bytes: number;
  bytes_per_packet: number;
  response_bytes: number;
  request_bytes: number;
  port_map: [number[], number[]];
  port_reflector_map: [number[], number[]];
  top_reflectors: Array<[string, number]>;
  first_seen: number;
  last_seen: number;
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  exporters: string[];
}

interface ReflectorRow {
  reflector: string;
  port: number;
  sampling: number;
  thr_targets: number;
  targets: number;
  targets_without_requests: number;
  response_bytes: number;
  response_packets: number;
  request_bytes: number;
  request_packets: number;
  amplification: number;
  top_targets: Array<[string, number]>;
  first_seen: number;
  last_seen: number;
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  exporters: string[];
}

/**
 * The UDP services CISA alert TA14-017A ("UDP-Based Amplification Attacks") lists as amplifiers, by
 * port (its bandwidth amplification factors are not used here: the ratio is measured).
 */
export const AMPLIFICATION_PORTS: Readonly<Record<number, string>> = {
  17: 'QOTD',
  19: 'chargen',
  53: 'DNS',
  111: 'portmap',
  123: 'NTP',
  137: 'NetBIOS',
  161: 'SNMP',
  389: 'CLDAP',
  1900: 'SSDP',
  3702: 'WS-Discovery',
  11211: 'memcached',
};

const serviceName = (port: number) => AMPLIFICATION_PORTS[port] ?? `UDP ${port}`;

const params = z.strictObject({
  /** Source ports of amplifiable services (CISA TA14-017A). */
  ports: z
    .array(z.number().int().min(1).max(65_535))
    .min(1)
    .max(100)
    .default(Object.keys(AMPLIFICATION_PORTS).map(Number)),
  /** Victim side: distinct reflectors whose responses the host never asked for. */
  minReflectors: z.number().int().min(1).default(20),
  /** Floor of the reflectors threshold once divided by the sampling rate. */
  minReflectorsSampled: z.number().int().min(1).default(3),
  /** Victim side: unsolicited response packets over the lookback (a few devices answering a discovery stay far below). */
  minPackets: z.number().positive().default(1_000),
  /** Victim side: average size of the unsolicited responses (amplified answers are large by design). */
  minBytesPerPacket: z.number().positive().default(200),
  /** Response bytes over request bytes: on the victim's amplification ports overall, and per reflecting host. */
  minAmplification: z.number().min(1).default(10),
  /** Reflector side: distinct external targets of one internal service. */
  minTargets: z.number().int().min(1).default(3),
  /** Floor of the targets threshold once divided by the sampling rate. */
  minTargetsSampled: z.number().int().min(1).default(1),
  /** Reflector side: response bytes over the lookback (10 MB ≈ 270 kbit/s for 5 minutes). */
  minReflectorBytes: z.number().positive().default(10_000_000),
});

const mbps = (bytes: number, fromMs: number, toMs: number) =>
  (bytes * 8) / Math.max(1, (toMs - fromMs) / 1000) / 1e6;

/**
 * UDP reflection/amplification (ATT&CK T1498.002 Network Denial of Service: Reflection Amplification),
 * from both ends: a host flooded with large unsolicited responses from many reflectors, and an
 * internal host serving as a reflector (its answers far larger than the spoofed requests it gets).
 */
export const udpAmplification = defineDetector({
  id: 'udp-amplification',
  title: 'UDP reflection/amplification',
  description:
    'Victim side: large UDP responses from amplification ports (DNS, NTP, SSDP, SNMP, CLDAP, memcached, chargen, QOTD, portmap, WS-Discovery, NetBIOS; CISA TA14-017A) from many reflectors the host never queried. Reflector side: an internal service answering external targets with ≥ 10× the bytes it receives.',
  techniques: ['T1498.002'],
  severity: 'high',
  intervalSeconds: 60,
  lookbackSeconds: 300,
  cooldownSeconds: 900,
  falsePositives: [
    'asymmetric routing: the exporter sees a host’s answers but not its queries (victim side; the overall response/request ratio on the ports usually still clears it)',
    'an authoritative DNS server answering DNSSEC (DNSKEY, ANY) queries of several resolvers: large answers to small queries (reflector side)',
    'SNMP bulk walks of an internal agent by an outside management station (reflector side)',
    'large DNS answers arrive as IP fragments, which exporters record without ports: the measured rate is a lower bound',
  ],
  params,
  async run(ctx) {
    const p = ctx.params;
    // One after the other: the embedded store runs one query at a time anyway.
    const victims = await ctx.query<VictimRow>(VICTIM, {
      ports: p.ports,
      min_reflectors: p.minReflectors,
      min_reflectors_sampled: p.minReflectorsSampled,
      min_packets: p.minPackets,
      min_bytes_per_packet: p.minBytesPerPacket,
      min_ratio: p.minAmplification,
    });
    const reflectors = await ctx.query<ReflectorRow>(REFLECTOR, {
      ports: p.ports,
      min_targets: p.minTargets,
      min_targets_sampled: p.minTargetsSampled,
      min_bytes: p.minReflectorBytes,
      min_ratio: p.minAmplification,
    });
    const out: Observation[] = [];
    for (const r of victims) {
      const victim = displayAddress(r.victim) ?? r.victim;
      const [portKeys, portBytes] = r.port_map;
      const reflectorsByPort = new Map(
        r.port_reflector_map[0].map((port, i) => [port, r.port_reflector_map[1][i]]),
      );
      const services = portKeys
        .map((port, i) => ({
          port,
          service: serviceName(port),
          bytes: portBytes[i] ?? 0,
          reflectors: reflectorsByPort.get(port) ?? 0,
        }))
        .sort((a, b) => b.bytes - a.bytes);
      const rate = mbps(r.unsolicited_bytes, r.first_seen, r.last_seen);
      const severity: Severity = rate >= 1_000 ? 'critical' : rate >= 100 ? 'high' : 'medium';
      const names = services.slice(0, 3).map((s) => s.service);
      out.push({
        key: ['victim', r.victim],
        title: `UDP amplification attack on ${victim}: ${r.reflectors} reflectors (${names.join(', ')}), ${formatQuantity(rate * 1e6)}bps, ${Math.round(r.bytes_per_packet)} B/packet`,
        severity,
        confidence: Math.min(
          1,
          0.6 +
            0.2 * Math.min(1, r.reflectors / (5 * r.thr_reflectors)) +
            0.2 * Math.min(1, r.bytes_per_packet / 1_000),
        ),
        techniqueIds: ['T1498.002'],
        srcIp: null,
        dstIp: r.victim,
        relatedIps: r.top_reflectors.map(([ip]) => ip),
        firstSeen: r.first_seen,
        lastSeen: r.last_seen,
        flows: r.new_flows,
        bytes: r.new_bytes,
        packets: r.new_packets,
        exporters: r.exporters,
        evidence: {
          role: 'victim',
          reflectors: r.reflectors,
          solicited_reflectors: r.solicited_reflectors,
          unsolicited_packets: Math.round(r.unsolicited_packets),
          unsolicited_bytes: Math.round(r.unsolicited_bytes),
          bytes_per_packet: Math.round(r.bytes_per_packet),
          average_mbps: Number(rate.toFixed(1)),
          response_bytes: Math.round(r.response_bytes),
          request_bytes: Math.round(r.request_bytes),
          services,
          top_reflectors: r.top_reflectors.map(([ip, bytes]) => ({
            ip: displayAddress(ip) ?? ip,
            bytes: Math.round(bytes),
          })),
          victim_internal: Number(r.victim_internal) === 1,
          threshold_reflectors: Number(r.thr_reflectors.toFixed(1)),
          threshold_packets: p.minPackets,
          threshold_bytes_per_packet: p.minBytesPerPacket,
          threshold_amplification: p.minAmplification,
          sampling_rate: r.sampling,
          reference: 'CISA TA14-017A',
        },
      });
    }
    for (const r of reflectors) {
      const host = displayAddress(r.reflector) ?? r.reflector;
      const rate = mbps(r.response_bytes, r.first_seen, r.last_seen);
      // Our host is part of someone else's DDoS whatever the size; it needs fixing (or closing) now.
      const severity: Severity = rate >= 100 ? 'critical' : 'high';
      out.push({
        key: ['reflector', r.reflector, r.port],
        title: `${host} is used as a ${serviceName(r.port)} amplifier (UDP ${r.port}): ${r.targets} external targets, ${Math.round(r.amplification)}× amplification, ${formatQuantity(rate * 1e6)}bps`,
        severity,
        confidence: Math.min(
          1,
          0.6 +
            0.2 * Math.min(1, Math.log10(r.amplification / p.minAmplification) + 0.5) +
            0.2 * Math.min(1, r.targets / (3 * r.thr_targets)),
        ),
        techniqueIds: ['T1498.002'],
        srcIp: r.reflector,
        dstIp: r.top_targets.length === 1 ? (r.top_targets[0]?.[0] ?? null) : null,
        relatedIps: r.top_targets.map(([ip]) => ip),
        firstSeen: r.first_seen,
        lastSeen: r.last_seen,
        flows: r.new_flows,
        bytes: r.new_bytes,
        packets: r.new_packets,
        exporters: r.exporters,
        evidence: {
          role: 'reflector',
          service: serviceName(r.port),
          port: r.port,
          targets: r.targets,
          targets_without_requests: r.targets_without_requests,
          amplification: Number(r.amplification.toFixed(1)),
          response_bytes: Math.round(r.response_bytes),
          response_packets: Math.round(r.response_packets),
          request_bytes: Math.round(r.request_bytes),
          request_packets: Math.round(r.request_packets),
          average_mbps: Number(rate.toFixed(2)),
          top_targets: r.top_targets.map(([ip, bytes]) => ({
            ip: displayAddress(ip) ?? ip,
            bytes: Math.round(bytes),
          })),
          threshold_targets: Number(r.thr_targets.toFixed(1)),
          threshold_amplification: p.minAmplification,
          threshold_bytes: p.minReflectorBytes,
          sampling_rate: r.sampling,
          reference: 'CISA TA14-017A',
        },
      });
    }
    return out;
  },
  mergeEvidence(previous, next) {
    const merged: Record<string, unknown> = { ...next };
    for (const k of ['reflectors', 'targets', 'average_mbps', 'amplification']) {
      if (k in next) merged[k] = maxNumber(previous[k], next[k]);
    }
    return merged;
  },
});
