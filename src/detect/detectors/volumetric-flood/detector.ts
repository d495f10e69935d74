import { z } from 'zod';
import { isValidCidr } from '../../../common/ip.js';
import type { Severity } from '../../../findings/model.js';
import { defineDetector, loadSql } from '../../detector.js';
import { formatQuantity, maxNumber, protocolName } from '../../evidence.js';
import { cidrRange, displayAddress } from '../../networks.js';

const QUERY = loadSql(import.meta.url, 'query.sql');
const EVIDENCE = loadSql(import.meta.url, 'evidence.sql');

interface HotRow {
  victim: string;
  victim_internal: number;
  sampling: number;
  thr_pps: number;
  thr_bps: number;
  thr_fps: number;
  peak_pps: number;
  peak_bps: number;
  peak_fps: number;
  hot_buckets: number;
  span_from: number;
  span_to: number;
}

interface EvidenceRow {
  victim: string;
  first_seen: number;
  last_seen: number;
  sources: number;
  top_sources: Array<[string, number, number]>;
  internal_source_share: number;
  protocols: Array<[number, number]>;
  top_ports: number[];
  flood_packets: number;
  flood_bytes: number;
  conversation_packets: number;
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  exporters: string[];
}

const override = z.strictObject({
  /** The hosts this applies to (a CIDR; the first matching override wins). */
  cidr: z.string().refine(isValidCidr, 'not a CIDR'),
  pps: z.number().positive().optional(),
  mbps: z.number().positive().optional(),
  flowsPerSecond: z.number().positive().optional(),
});

const params = z.strictObject({
  /** Width of the rate buckets (FastNetMon averages over a few seconds; 10 s smooths export jitter). */
  bucketSeconds: z.number().int().min(1).max(60).default(10),
  /** Packets per second toward one host (FastNetMon threshold_pps). */
  pps: z.number().positive().default(20_000),
  /** Megabits per second toward one host (FastNetMon threshold_mbps). */
  mbps: z.number().positive().default(1_000),
  /** New flows (5-tuples) per second toward one host (FastNetMon threshold_flows). */
  flowsPerSecond: z.number().positive().default(3_500),
  /** Floor of the flows threshold once divided by the sampling rate. */
  flowsPerSecondSampled: z.number().positive().default(50),
  /** A 5-tuple is a conversation (not counted) when the host answers ≥ 1 packet per this many received. */
  answerRatio: z.number().min(1).default(64),
  /** Per-host thresholds (hostgroups in FastNetMon's terms): a busy CDN edge, a lab that is flooded on purpose. */
  hostOverrides: z.array(override).max(1_000).default([]),
});

type Params = z.infer<typeof params>;

/** Each override's thresholds (the defaults where it leaves one out), as parallel arrays for the query. */
function resolved(p: Params): { lo: string[]; hi: string[]; pps: number[]; bps: number[]; fps: number[] } {
  const out = {
    lo: [] as string[],
    hi: [] as string[],
    pps: [] as number[],
    bps: [] as number[],
    fps: [] as number[],
  };
  for (const o of p.hostOverrides) {
    const r = cidrRange(o.cidr);
    out.lo.push(r.lo);
    out.hi.push(r.hi);
    out.pps.push(o.pps ?? p.pps);
    out.bps.push((o.mbps ?? p.mbps) * 1e6);
    out.fps.push(o.flowsPerSecond ?? p.flowsPerSecond);
  }
  return out;
}

/**
 * Volumetric flood toward one host (ATT&CK T1498.001 Network Denial of Service: Direct Network Flood),
 * on packets, bits and new flows per second as FastNetMon measures them per host (its defaults:
 * threshold_pps 20,000, threshold_mbps 1,000, threshold_flows 3,500). Unlike FastNetMon, traffic the
 * host answers (a two-way conversation) is not counted, so a single large download or a flash crowd
 * of completed sessions is not a flood.
 */
export const volumetricFlood = defineDetector({
  id: 'volumetric-flood',
  title: 'Volumetric flood',
  description:
    'Packets, bits or new flows per second toward one host above absolute thresholds (per-host overrides), in 10 s buckets with each flow pro-rated over its duration; one-way traffic only (the host does not answer it), with the top sources, protocols and ports.',
  techniques: ['T1498.001'],
  severity: 'high',
  intervalSeconds: 60,
  lookbackSeconds: 300,
  cooldownSeconds: 900,
  falsePositives: [
    'one-way bulk streams the host never acknowledges (multicast video, UDP replication, syslog/NetFlow collectors receiving from many exporters): raise the host thresholds with hostOverrides',
    'load tests and stress tests run on purpose',
    'the same traffic exported by several routers is counted once per exporter (a finding can show twice the rate)',
  ],
  params,
  async run(ctx) {
    const p = ctx.params;
    const bucketS = p.bucketSeconds;
    const o = resolved(p);
    const minPps = Math.min(p.pps, ...o.pps);
    const minBps = Math.min(p.mbps * 1e6, ...o.bps);
    const minFps = Math.min(p.flowsPerSecond, ...o.fps);
    const hot = await ctx.query<HotRow>(QUERY, {
      bucket_ms: bucketS * 1000,
      min_pps: p.pps,
      min_bps: p.mbps * 1e6,
      min_fps: p.flowsPerSecond,
      min_fps_sampled: p.flowsPerSecondSampled,
      override_lo: o.lo,
      override_hi: o.hi,
      override_pps: o.pps,
      override_bps: o.bps,
      override_fps: o.fps,
      prefilter_packets: minPps * bucketS,
      prefilter_bytes: (minBps / 8) * bucketS,
      prefilter_fps: minFps,
      answer_ratio: p.answerRatio,
      span_cap_ms: ctx.window.to - ctx.window.contextFrom,
    });
    if (hot.length === 0) return [];
    const details = await ctx.query<EvidenceRow>(EVIDENCE, {
      victims: hot.map((r) => r.victim),
      span_from: hot.map((r) => r.span_from),
      span_to: hot.map((r) => r.span_to),
      answer_ratio: p.answerRatio,
    });
    const byVictim = new Map(details.map((d) => [d.victim, d]));
    return hot.flatMap((h) => {
      const d = byVictim.get(h.victim);
      if (!d) return [];
      const r = { ...h, ...d };
      const victim = displayAddress(r.victim) ?? r.victim;
      const exceeded: string[] = [];
      if (r.peak_pps >= r.thr_pps) exceeded.push('pps');
      if (r.peak_bps >= r.thr_bps) exceeded.push('bps');
      if (r.peak_fps >= r.thr_fps) exceeded.push('flows');
      const magnitude = Math.max(r.peak_pps / r.thr_pps, r.peak_bps / r.thr_bps, r.peak_fps / r.thr_fps);
      const outbound = Number(r.victim_internal) === 0 && r.internal_source_share >= 0.5;
      // Severity by how far the worst rate is above its threshold; our own hosts flooding someone
      // else are compromised (or misused) whatever the size.
      let severity: Severity = magnitude >= 10 ? 'critical' : magnitude >= 3 ? 'high' : 'medium';
      if (outbound && severity === 'medium') severity = 'high';
      const totalPackets = r.protocols.reduce((s, [, n]) => s + n, 0) || 1;
      const protocols = [...r.protocols]
        .sort((a, b) => b[1] - a[1])
        .map(([proto, packets]) => ({
          protocol: protocolName(proto),
          packets: Math.round(packets),
          share: Number((packets / totalPackets).toFixed(3)),
        }));
      const main = protocols[0]?.protocol ?? '?';
      const what = [
        `${formatQuantity(r.peak_pps)} pps`,
        `${formatQuantity(r.peak_bps)}bps`,
        `${formatQuantity(r.peak_fps)} flows/s`,
      ].join(', ');
      const title = outbound
        ? `Outbound ${main} flood toward ${victim} from ${r.sources} internal source${r.sources === 1 ? '' : 's'}: ${what}`
        : `${main} flood toward ${victim} from ${r.sources} source${r.sources === 1 ? '' : 's'}: ${what}`;
      return {
        key: [r.victim],
        title,
        severity,
        confidence: Math.min(1, 0.6 + 0.2 * Math.log10(magnitude)),
        techniqueIds: ['T1498.001'],
        srcIp: r.sources === 1 ? (r.top_sources[0]?.[0] ?? null) : null,
        dstIp: r.victim,
        relatedIps: r.top_sources.map((s) => s[0]),
        firstSeen: r.first_seen,
        lastSeen: r.last_seen,
        flows: r.new_flows,
        bytes: r.new_bytes,
        packets: r.new_packets,
        exporters: r.exporters,
        evidence: {
          peak_pps: Math.round(r.peak_pps),
          peak_mbps: Number((r.peak_bps / 1e6).toFixed(1)),
          peak_flows_per_second: Math.round(r.peak_fps),
          threshold_pps: r.thr_pps,
          threshold_mbps: r.thr_bps / 1e6,
          threshold_flows_per_second: Number(r.thr_fps.toFixed(1)),
          exceeded,
          bucket_seconds: bucketS,
          over_threshold_buckets: r.hot_buckets,
          sources: r.sources,
          top_sources: r.top_sources.map(([ip, packets, bytes]) => ({
            ip: displayAddress(ip) ?? ip,
            packets: Math.round(packets),
            bytes: Math.round(bytes),
          })),
          protocols,
          top_ports: r.top_ports,
          flood_packets: Math.round(r.flood_packets),
          flood_bytes: Math.round(r.flood_bytes),
          excluded_conversation_packets: Math.round(r.conversation_packets),
          direction: outbound ? 'outbound' : Number(r.victim_internal) === 1 ? 'inbound' : 'external',
          internal_source_share: Number(r.internal_source_share.toFixed(3)),
          sampling_rate: r.sampling,
          answer_ratio: p.answerRatio,
        },
      };
    });
  },
  mergeEvidence(previous, next) {
    return {
      ...next,
      peak_pps: maxNumber(previous.peak_pps, next.peak_pps),
      peak_mbps: maxNumber(previous.peak_mbps, next.peak_mbps),
      peak_flows_per_second: maxNumber(previous.peak_flows_per_second, next.peak_flows_per_second),
      sources: maxNumber(previous.sources, next.sources),
    };
  },
});
