import { z } from 'zod';
import type { Severity } from '../../../findings/model.js';
import type { TechniqueId } from '../../attack.js';
import { defineDetector, loadSql } from '../../detector.js';
import { mergeSampleLists } from '../../evidence.js';
import { displayAddress } from '../../networks.js';
import { expandHistory } from './history-source.js';

const CANDIDATES = loadSql(import.meta.url, 'query.sql');
const BASELINE = loadSql(import.meta.url, 'baseline.sql');
const PREVALENCE = loadSql(import.meta.url, 'prevalence.sql');

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** The baseline query's row bound: 200 hosts × 30 days of hours with a few peers each stays below it. */
const MAX_BASELINE_ROWS = 500_000;

interface CandidateRow {
  host: string;
  peer: string;
  out_bytes: number;
  in_bytes: number;
  out_packets: number;
  in_packets: number;
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  first_seen: string;
  last_seen: string;
  connections: number;
  chunks: number;
  chunk_avg: number | null;
  chunk_sd: number | null;
  served_out_bytes: number;
  peer_ports: number[];
  protocols: number[];
  rate: number;
  exporters: string[];
  host_out_bytes: number;
  host_peers: number;
}

interface BaselineRow {
  host: string;
  hour: string;
  peer: string;
  out_bytes: number;
}

interface PrevalenceRow {
  peer: string;
  hosts: number;
  sample_hosts: string[];
}

const MB = 1_000_000;

const params = z.strictObject({
  /** Outbound bytes from one host to one external address in the lookback before it is judged (Slips: 100 MB per connection). */
  minBytes: z
    .number()
    .int()
    .min(1)
    .default(100 * MB),
  /** Without a baseline, or to a popular destination: the bar a transfer must clear (Slips: 500 MB per IP per hour). */
  absoluteBytes: z
    .number()
    .int()
    .min(1)
    .default(500 * MB),
  /** A transfer this large to a rare destination is high severity. */
  highBytes: z
    .number()
    .int()
    .min(1)
    .default(1_000 * MB),
  /** Outbound bytes must be at least this many times the inbound ones (a download or a call is not an upload). */
  minOutInRatio: z.number().min(0).default(2),
  /** Robust z-score of the host's hour against its baseline (Slips: 3.0 per hour, 3.5 per flow). */
  zThreshold: z.number().min(0).default(3.5),
  /** Lower bound of σ in log1p(bytes) units (e^0.5 ≈ ×1.65 per σ), so a very steady host is not flagged for small swings. */
  sigmaFloor: z.number().min(0.01).default(0.5),
  /** Days of history the baseline and the prevalence are computed over (the flows table keeps 30). */
  historyDays: z.number().int().min(1).max(30).default(7),
  /** Hours with traffic the baseline needs (Slips: 6 points); fewer, and the absolute threshold applies. */
  minBaselineHours: z.number().int().min(2).default(6),
  /** The host sent at least this fraction of the volume to the same peer in one hour of the history: routine (nightly backup). */
  routineFraction: z.number().min(0).max(10).default(0.5),
  /** Internal hosts that talked to the destination, this host included, from which it counts as popular. */
  popularHosts: z.number().int().min(2).default(10),
  /** A connection with at least this many outbound bytes counts as a chunk (T1030 evidence). */
  chunkMinBytes: z
    .number()
    .int()
    .min(1)
    .default(1 * MB),
  /** Chunks of near-equal size (coefficient of variation ≤ maxChunkCv) that make the transfer T1030. */
  minChunks: z.number().int().min(2).default(5),
  maxChunkCv: z.number().min(0).max(1).default(0.1),
  /** Pairs judged per run, largest first. */
  maxCandidates: z.number().int().min(1).max(1_000).default(200),
});

type Params = z.infer<typeof params>;

/** Median of a sorted copy (the mean of the two middle values for an even count). */
function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export interface RobustBaseline {
  readonly points: number;
  /** Median and MAD of log1p(bytes per hour). */
  readonly medianLog: number;
  readonly madLog: number;
  readonly sigma: number;
}

/** Slips' robust baseline: log1p of the hourly values, median, σ = max(1.4826·MAD, floor). */
export function robustBaseline(hourly: readonly number[], sigmaFloor: number): RobustBaseline | null {
  if (hourly.length === 0) return null;
  const logs = hourly.map((b) => Math.log1p(b));
  const med = median(logs);
  const mad = median(logs.map((x) => Math.abs(x - med)));
  return { points: logs.length, medianLog: med, madLog: mad, sigma: Math.max(1.4826 * mad, sigmaFloor) };
}

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${Math.round(n)} B`;
}

const SEVERITY_ORDER: readonly Severity[] = ['low', 'medium', 'high', 'critical'];

function lower(severity: Severity): Severity {
  return SEVERITY_ORDER[Math.max(0, SEVERITY_ORDER.indexOf(severity) - 1)]!;
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

/**
 * Large outbound transfer (ATT&CK T1048 Exfiltration Over Alternative Protocol; T1041 Exfiltration
 * Over C2 Channel when the destination is on a malicious or Tor indicator list, i.e. it also looks
 * like command and control; T1030 Data Transfer Size Limits when the volume went out in many
 * near-equal chunks). Anchors: Slips' data-upload evidence (500 MB to one IP per hour, 100 MB in one
 * connection) and its robust z-score baseline; Elastic's ML rule on unusual outbound volume per host.
 */
export const exfiltration = defineDetector({
  id: 'exfiltration',
  title: 'Large outbound transfer',
  description:
    'An internal host sends far more to one external address than its own hourly baseline (robust z-score on log1p bytes over the previous days), to a destination few internal hosts talk to. Without a baseline (a new host) or to a popular destination only volumes above an absolute threshold are reported; a host that sent a similar volume to the same peer before (a nightly backup) is routine.',
  techniques: ['T1048', 'T1041', 'T1030'],
  severity: 'medium',
  intervalSeconds: 300,
  lookbackSeconds: 3_600,
  cooldownSeconds: 3_600,
  falsePositives: [
    'backups and sync to a new or rarely used destination (the first run of a job has no history: allowlist the backup server or its target)',
    'uploads to cloud storage or CDN addresses that rotate, so each address looks rare (allowlist the provider ranges)',
    'a public server answering one large download (reported one step lower: the peer connected to it)',
    'a host whose first day of traffic includes a large legitimate upload (absolute threshold only)',
  ],
  params,
  async run(ctx) {
    const p: Params = ctx.params;
    const candidates = await ctx.query<CandidateRow>(CANDIDATES, {
      min_bytes: p.minBytes,
      min_out_in_ratio: p.minOutInRatio,
      chunk_min_bytes: p.chunkMinBytes,
      max_candidates: p.maxCandidates,
    });
    if (candidates.length === 0) return [];

    // The engine's context starts at contextFrom, or at the backfill's range start if later: the
    // history ends exactly there.
    const contextStart = ctx.window.range
      ? Math.max(ctx.window.contextFrom, ctx.window.range.from)
      : ctx.window.contextFrom;
    const historyFrom = contextStart - p.historyDays * DAY_MS;
    const hosts = [...new Set(candidates.map((c) => c.host))];
    const peers = [...new Set(candidates.map((c) => c.peer))];
    const historyParams = {
      hosts,
      peers,
      history_from: historyFrom,
      history_to: contextStart,
      recent_to: ctx.window.to,
    };
    const [baselineRows, prevalenceRows] = await Promise.all([
      ctx.query<BaselineRow>(expandHistory(BASELINE, ctx.window.mode), {
        ...historyParams,
        max_rows: MAX_BASELINE_ROWS,
      }),
      ctx.query<PrevalenceRow>(expandHistory(PREVALENCE, ctx.window.mode), historyParams),
    ]);

    // Per host: outbound bytes per hour; per (host, peer): the largest hour and the total to that peer.
    const hostHours = new Map<string, Map<string, number>>();
    const pairHistory = new Map<string, { maxHour: number; total: number; hours: number }>();
    for (const r of baselineRows) {
      const bytes = Number(r.out_bytes);
      const hours = hostHours.get(r.host) ?? new Map<string, number>();
      hours.set(r.hour, (hours.get(r.hour) ?? 0) + bytes);
      hostHours.set(r.host, hours);
      if (displayAddress(r.peer) !== null) {
        const key = `${r.host}|${r.peer}`;
        const h = pairHistory.get(key) ?? { maxHour: 0, total: 0, hours: 0 };
        h.maxHour = Math.max(h.maxHour, bytes);
        h.total += bytes;
        h.hours++;
        pairHistory.set(key, h);
      }
    }
    const prevalence = new Map(prevalenceRows.map((r) => [r.peer, r]));
    const lookbackSeconds = (ctx.window.to - contextStart) / 1000;
    // The current volume is over the lookback; the baseline is per hour.
    const lookbackHours = Math.max(1, lookbackSeconds / 3600);

    const observations = [];
    for (const c of candidates) {
      const out = Number(c.out_bytes);
      const pair = pairHistory.get(`${c.host}|${c.peer}`) ?? { maxHour: 0, total: 0, hours: 0 };
      const routine = pair.maxHour > 0 && pair.maxHour >= p.routineFraction * out;
      if (routine) continue;

      const hourly = [...(hostHours.get(c.host)?.values() ?? [])];
      const stats = robustBaseline(hourly, p.sigmaFloor);
      const hasBaseline = stats !== null && stats.points >= p.minBaselineHours;
      const hostOut = Number(c.host_out_bytes);
      const z = hasBaseline ? (Math.log1p(hostOut / lookbackHours) - stats.medianLog) / stats.sigma : null;

      const prev = prevalence.get(c.peer);
      const destinationHosts = Math.max(1, Number(prev?.hosts ?? 1));
      const rare = destinationHosts <= 1;
      const popular = destinationHosts >= p.popularHosts;
      const intel = ctx.threatIntel.lookup(c.peer);
      const c2 = intel !== null && intel.category !== 'mining';

      // The decision. A listed destination (C2-like) is reported from minBytes on; a popular one, or
      // any one without a baseline, only above the absolute bar; otherwise the z-score decides.
      let reason: string;
      if (c2) {
        reason = `destination on indicator list ${intel.list}`;
      } else if (!hasBaseline) {
        if (out < p.absoluteBytes) continue;
        reason = `no baseline (${stats?.points ?? 0} hours of history < ${p.minBaselineHours}): absolute threshold`;
      } else if (z! < p.zThreshold) {
        continue;
      } else if (popular) {
        if (out < p.absoluteBytes) continue;
        reason = `popular destination (${destinationHosts} internal hosts): absolute threshold and z-score`;
      } else {
        reason = 'z-score over the host baseline';
      }

      const served = Number(c.served_out_bytes) * 2 > out;
      let severity: Severity;
      if (c2) severity = out >= p.highBytes ? 'critical' : 'high';
      else if (popular) severity = 'low';
      else if (out >= p.highBytes) severity = 'high';
      else if (hasBaseline && rare && out >= p.absoluteBytes) severity = 'high';
      else severity = 'medium';
      if (served && !c2) severity = lower(severity);

      const rate = Math.max(1, Number(c.rate));
      const chunks = Number(c.chunks);
      const chunkAvg = c.chunk_avg === null ? null : Number(c.chunk_avg);
      const chunkCv = chunkAvg && chunkAvg > 0 && c.chunk_sd !== null ? Number(c.chunk_sd) / chunkAvg : null;
      const minChunks = Math.max(3, Math.ceil(p.minChunks / rate));
      const chunked = chunks >= minChunks && chunkCv !== null && chunkCv <= p.maxChunkCv;

      const techniqueIds: TechniqueId[] = [c2 ? 'T1041' : 'T1048'];
      if (chunked) techniqueIds.push('T1030');

      let confidence: number;
      if (c2) confidence = 0.9;
      else if (z === null) confidence = 0.4;
      else confidence = Math.min(0.95, 0.55 + 0.05 * (z - p.zThreshold) + (rare ? 0.1 : 0));
      if (popular) confidence = Math.min(confidence, 0.35);

      const firstMs = Date.parse(`${c.first_seen.replace(' ', 'T')}Z`);
      const lastMs = Date.parse(`${c.last_seen.replace(' ', 'T')}Z`);
      const baselineMedian = hasBaseline ? Math.expm1(stats.medianLog) : null;
      const host = displayAddress(c.host) ?? c.host;
      const peer = displayAddress(c.peer) ?? c.peer;
      const context =
        z !== null ? `baseline median ${formatBytes(baselineMedian!)}/h, z ${z.toFixed(1)}` : 'no baseline';
      observations.push({
        key: [c.host, c.peer],
        title: `${c2 ? 'Upload to listed destination' : 'Large upload'} from ${host} to ${peer}: ${formatBytes(out)} out in ${round(lookbackSeconds / 60, 0)} min (${context})`,
        severity,
        confidence,
        techniqueIds,
        srcIp: c.host,
        dstIp: c.peer,
        firstSeen: c.first_seen,
        lastSeen: c.last_seen,
        flows: Number(c.new_flows),
        bytes: Number(c.new_bytes),
        packets: Number(c.new_packets),
        exporters: c.exporters,
        evidence: {
          bytes_out: out,
          bytes_in: Number(c.in_bytes),
          packets_out: Number(c.out_packets),
          packets_in: Number(c.in_packets),
          host_bytes_out: hostOut,
          host_external_peers: Number(c.host_peers),
          reason,
          baseline: hasBaseline
            ? {
                points_hours: stats.points,
                median_bytes_per_hour: Math.round(baselineMedian!),
                median_log1p: round(stats.medianLog, 3),
                mad_log1p: round(stats.madLog, 3),
                sigma_log1p: round(stats.sigma, 3),
              }
            : null,
          baseline_hours: stats?.points ?? 0,
          z_score: z === null ? null : round(z),
          destination_hosts: destinationHosts,
          destination_rare: rare,
          destination_popular: popular,
          destination_sample_hosts: (prev?.sample_hosts ?? []).map((a) => displayAddress(a) ?? a),
          pair_history_bytes: pair.total,
          pair_history_max_hour_bytes: pair.maxHour,
          indicator: intel
            ? { indicator: intel.indicator, list: intel.list, category: intel.category }
            : null,
          peer_ports: c.peer_ports,
          protocols: c.protocols,
          connections: Number(c.connections),
          chunks,
          chunk_avg_bytes: chunkAvg === null ? null : Math.round(chunkAvg),
          chunk_cv: chunkCv === null ? null : round(chunkCv, 3),
          peer_initiated: served,
          duration_seconds: Number.isFinite(lastMs - firstMs) ? round((lastMs - firstMs) / 1000, 1) : null,
          sampling_rate: rate,
          lookback_seconds: lookbackSeconds,
          history_days: p.historyDays,
          thresholds: {
            min_bytes: p.minBytes,
            absolute_bytes: p.absoluteBytes,
            high_bytes: p.highBytes,
            z: p.zThreshold,
            sigma_floor: p.sigmaFloor,
            min_baseline_hours: p.minBaselineHours,
            popular_hosts: p.popularHosts,
            routine_fraction: p.routineFraction,
            min_out_in_ratio: p.minOutInRatio,
            min_chunks: minChunks,
            max_chunk_cv: p.maxChunkCv,
          },
        },
      });
    }
    return observations;
  },
  mergeEvidence(previous, next) {
    const num = (v: unknown) => (typeof v === 'number' ? v : 0);
    return {
      ...next,
      peak_bytes_out: Math.max(num(previous.peak_bytes_out), num(previous.bytes_out), num(next.bytes_out)),
      peak_z_score: Math.max(num(previous.peak_z_score), num(previous.z_score), num(next.z_score)),
      peer_ports: mergeSampleLists(previous.peer_ports, next.peer_ports, 10),
    };
  },
});
