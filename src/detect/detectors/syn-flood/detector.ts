import { z } from 'zod';
import { isValidCidr } from '../../../common/ip.js';
import type { Severity } from '../../../findings/model.js';
import { defineDetector, loadSql } from '../../detector.js';
import { formatQuantity, maxNumber } from '../../evidence.js';
import { cidrRange, displayAddress } from '../../networks.js';

const QUERY = loadSql(import.meta.url, 'query.sql');
const EVIDENCE = loadSql(import.meta.url, 'evidence.sql');

interface HotRow {
  victim: string;
  victim_internal: number;
  sampling: number;
  thr_syn_pps: number;
  thr_sources: number;
  peak_syn_pps: number;
  peak_share: number;
  min_share: number;
  peak_sources: number;
  hot_buckets: number;
  span_from: number;
  span_to: number;
}

interface EvidenceRow {
  victim: string;
  first_seen: number;
  last_seen: number;
  syn_packets: number;
  sources: number;
  single_packet_sources: number;
  internal_source_share: number;
  top_sources: Array<[string, number]>;
  top_ports: Array<[number, number]>;
  ports: number;
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  exporters: string[];
}

const override = z.strictObject({
  /** The hosts this applies to (a CIDR; the first matching override wins). */
  cidr: z.string().refine(isValidCidr, 'not a CIDR'),
  synPps: z.number().positive(),
});

const params = z.strictObject({
  /** Width of the rate buckets. */
  bucketSeconds: z.number().int().min(1).max(60).default(10),
  /**
   * SYN packets per second toward one host. A listener without SYN cookies fills its backlog at a few
   * hundred unanswered SYNs per second; 5,000 keeps busy servers' failed connection attempts below it.
   */
  synPps: z.number().positive().default(5_000),
  /**
   * Share of the host's TCP packets that are SYNs in the same bucket. FastNetMon flags a host when
   * over 90 % of its packets are SYNs; 0.5 also catches a flood against a server whose own sessions
   * keep flowing (a completed session brings at least five packets toward the server besides its SYN).
   */
  minSynShare: z.number().gt(0).max(1).default(0.5),
  /** Distinct SYN sources in the bucket: below this it is one scanner or a few clients, not a flood. */
  minSources: z.number().int().min(1).default(20),
  /** Floor of the sources threshold once divided by the sampling rate. */
  minSourcesSampled: z.number().int().min(1).default(3),
  /** Per-host SYN rate thresholds (a lab host, a very busy edge). */
  hostOverrides: z.array(override).max(1_000).default([]),
});

/**
 * TCP SYN flood toward one host (ATT&CK T1498.001 Direct Network Flood and T1499.001 OS Exhaustion
 * Flood: the flood fills the TCP stack's half-open connection state). FastNetMon's SYN share rule on
 * pro-rated 10 s buckets, with many sources required and the spoofing tell (sources that sent one
 * packet) in the evidence.
 */
export const synFlood = defineDetector({
  id: 'syn-flood',
  title: 'SYN flood',
  description:
    'TCP SYNs without ACK toward one host at a high rate, forming most of its incoming TCP packets, from many sources (spoofed sources sending one packet each are counted); per 10 s bucket with flows pro-rated over their duration.',
  techniques: ['T1498.001', 'T1499.001'],
  severity: 'high',
  intervalSeconds: 60,
  lookbackSeconds: 300,
  cooldownSeconds: 900,
  falsePositives: [
    'a popular server that is down or unreachable while many clients keep retrying (the SYN share goes to 100 %; the sources retransmit, so few send a single packet)',
    'load tests of connection setup (allowlist the test sources or raise the host threshold)',
    'biflow exporters whose TCP flags are the OR of both directions hide the SYN-only records (no finding)',
  ],
  params,
  async run(ctx) {
    const p = ctx.params;
    const bucketS = p.bucketSeconds;
    const lo: string[] = [];
    const hi: string[] = [];
    const pps: number[] = [];
    for (const o of p.hostOverrides) {
      const r = cidrRange(o.cidr);
      lo.push(r.lo);
      hi.push(r.hi);
      pps.push(o.synPps);
    }
    const hot = await ctx.query<HotRow>(QUERY, {
      bucket_ms: bucketS * 1000,
      min_syn_pps: p.synPps,
      override_lo: lo,
      override_hi: hi,
      override_syn_pps: pps,
      min_share: p.minSynShare,
      min_sources: p.minSources,
      min_sources_sampled: p.minSourcesSampled,
      prefilter_packets: Math.min(p.synPps, ...pps) * bucketS,
      span_cap_ms: ctx.window.to - ctx.window.contextFrom,
    });
    if (hot.length === 0) return [];
    const details = await ctx.query<EvidenceRow>(EVIDENCE, {
      victims: hot.map((r) => r.victim),
      span_from: hot.map((r) => r.span_from),
      span_to: hot.map((r) => r.span_to),
    });
    const byVictim = new Map(details.map((d) => [d.victim, d]));
    return hot.flatMap((h) => {
      const d = byVictim.get(h.victim);
      if (!d) return [];
      const victim = displayAddress(h.victim) ?? h.victim;
      const magnitude = h.peak_syn_pps / h.thr_syn_pps;
      const outbound = Number(h.victim_internal) === 0 && d.internal_source_share >= 0.5;
      let severity: Severity = magnitude >= 10 ? 'critical' : magnitude >= 3 ? 'high' : 'medium';
      if (outbound && severity === 'medium') severity = 'high';
      const spoofedShare = d.sources > 0 ? d.single_packet_sources / d.sources : 0;
      const ports = d.top_ports.map(([port, packets]) => ({ port, packets: Math.round(packets) }));
      const portText =
        d.ports === 1 ? `port ${ports[0]?.port}` : `${d.ports} ports (top ${ports[0]?.port ?? '?'})`;
      const title = `${outbound ? 'Outbound SYN flood' : 'SYN flood'} toward ${victim} ${portText}: ${formatQuantity(h.peak_syn_pps)} SYN/s from ${d.sources} sources, ${Math.round(h.peak_share * 100)} % SYN`;
      return [
        {
          key: [h.victim],
          title,
          severity,
          // Many single-packet sources make it a spoofed flood beyond doubt; a share barely over the
          // threshold leaves room for a struggling service.
          confidence: Math.min(1, 0.5 + 0.2 * Math.min(1, Math.log10(magnitude) + 0.5) + 0.3 * spoofedShare),
          techniqueIds: ['T1498.001', 'T1499.001'],
          srcIp: null,
          dstIp: h.victim,
          relatedIps: d.top_sources.map(([ip]) => ip),
          firstSeen: d.first_seen,
          lastSeen: d.last_seen,
          flows: d.new_flows,
          bytes: d.new_bytes,
          packets: d.new_packets,
          exporters: d.exporters,
          evidence: {
            peak_syn_pps: Math.round(h.peak_syn_pps),
            syn_share: Number(h.peak_share.toFixed(3)),
            min_syn_share: Number(h.min_share.toFixed(3)),
            peak_sources_per_bucket: h.peak_sources,
            threshold_syn_pps: h.thr_syn_pps,
            threshold_syn_share: p.minSynShare,
            threshold_sources: Number(h.thr_sources.toFixed(1)),
            bucket_seconds: bucketS,
            over_threshold_buckets: h.hot_buckets,
            syn_packets: Math.round(d.syn_packets),
            sources: d.sources,
            single_packet_sources: d.single_packet_sources,
            single_packet_source_share: Number(spoofedShare.toFixed(3)),
            top_sources: d.top_sources.map(([ip, packets]) => ({
              ip: displayAddress(ip) ?? ip,
              packets: Math.round(packets),
            })),
            top_ports: ports,
            distinct_ports: d.ports,
            direction: outbound ? 'outbound' : Number(h.victim_internal) === 1 ? 'inbound' : 'external',
            internal_source_share: Number(d.internal_source_share.toFixed(3)),
            sampling_rate: h.sampling,
          },
        },
      ];
    });
  },
  mergeEvidence(previous, next) {
    return {
      ...next,
      peak_syn_pps: maxNumber(previous.peak_syn_pps, next.peak_syn_pps),
      peak_sources_per_bucket: maxNumber(previous.peak_sources_per_bucket, next.peak_sources_per_bucket),
      sources: maxNumber(previous.sources, next.sources),
    };
  },
});
