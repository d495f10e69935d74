import { z } from 'zod';
import type { Severity } from '../../../findings/model.js';
import { defineDetector, loadSql, type Observation } from '../../detector.js';
import { scoreBeacon } from './score.js';

const QUERY = loadSql(import.meta.url, 'query.sql');

interface Row {
  client: string;
  server: string;
  connections: number;
  latest: Array<[number, number]>;
  first_ms: number;
  last_ms: number;
  hours: number;
  ports: number[];
  protos: number[];
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  rate: number;
  exporters: string[];
  server_clients: number;
  internal_clients: number;
  dataset_from: number;
  dataset_to: number;
}

const DAY = 86_400;

const params = z.strictObject({
  /** Beacon score (0..1) from which a pair is reported (RITA's bands: 0.5 low, 0.7 medium, 0.9 high). */
  minScore: z.number().min(0).max(1).default(0.7),
  /** Connections per pair in the lookback; RITA needs 4 distinct timestamps. */
  minConnections: z.number().int().min(4).default(4),
  /**
   * Least time from a pair's first to its last connection for a beacon: a page polling its server
   * every few seconds for a minute is regular but is not C2, which beacons for hours.
   */
  minSpanSeconds: z.number().int().min(0).max(DAY).default(1_800),
  /** Floor of minConnections once divided by the sampling rate. */
  minConnectionsSampled: z.number().int().min(4).default(4),
  /** Connections per 24 h from which a pair is a strobe, reported as such instead of scored (RITA: 86,400). */
  strobeConnections: z.number().int().min(100).default(86_400),
  /** Silence (seconds) after which a record of the same 5-tuple opens a new connection. */
  joinGapSeconds: z.number().min(0).max(3_600).default(60),
  /**
   * A server that at least this share of the internal clients (and at least prevalenceMinClients of
   * them) talk to is an organisation-wide service: update checker, EDR, telemetry. RITA lowers the score
   * of destinations seen by ≥ 50 % of hosts.
   */
  prevalenceShare: z.number().min(0).max(1).default(0.5),
  prevalenceMinClients: z.number().int().min(1).default(3),
  /** What a prevalent server does to a pair: skip it, or lower its score by 0.15 as RITA does. */
  prevalenceAction: z.enum(['skip', 'demote']).default('skip'),
  /**
   * Most dispersion of the intervals (median absolute deviation / median) for a beacon. Events that
   * arrive independently of each other (a resolver's upstream lookups, a busy API client: a Poisson
   * stream) have ≈ 0.69 and, at a high rate, score high on RITA's other three sub-scores (an even
   * histogram, full coverage, and a Bowley skew taken as 0 below 10 s of spread); a beacon sleeping
   * 10 min ± 70 % has ≈ 0.35.
   */
  maxIntervalDispersion: z.number().min(0).max(10).default(0.5),
  /** Latest connections per pair that are scored (bounds the arrays the query returns). */
  maxConnectionsScored: z.number().int().min(16).max(100_000).default(5_000),
  /** Pairs scored per run (those covering most hours first). */
  maxPairs: z.number().int().min(1).max(100_000).default(5_000),
});

type Params = z.infer<typeof params>;

function severityOf(score: number): Severity {
  if (score >= 0.9) return 'high';
  if (score >= 0.7) return 'medium';
  return 'low';
}

const fmtSeconds = (s: number): string =>
  s >= 3_600 ? `${(s / 3_600).toFixed(1)} h` : s >= 60 ? `${(s / 60).toFixed(1)} min` : `${s} s`;

/**
 * C2 beaconing (ATT&CK T1071 Application Layer Protocol): an internal host that connects to the same
 * external address at regular intervals with regular sizes, scored as RITA v5 does
 * (analysis/beacons.go). Flows say nothing about the application protocol or encryption, so findings
 * carry T1071 only (not T1071.001 or T1573 on the strength of a port number); the ports are in the
 * evidence for the analyst.
 */
export const beaconing = defineDetector({
  id: 'beaconing',
  title: 'C2 beaconing',
  description:
    'An internal host connects to one external address at regular intervals with regular request sizes over up to 24 hours (RITA-style score of intervals, sizes, hourly histogram and duration); strobes (one connection per second or more) are reported as such. Connections are rebuilt from records: active-timeout splits of one connection are joined, so long sessions never look like beacons. Servers that a large share of internal hosts talk to (telemetry, updates, EDR) are skipped.',
  techniques: ['T1071'],
  severity: 'medium',
  intervalSeconds: 3_600,
  lookbackSeconds: DAY,
  cooldownSeconds: DAY,
  falsePositives: [
    'software update checks, telemetry, EDR and antivirus agents, NTP, mail and chat clients polling (the prevalence rule removes the organisation-wide ones; allowlist the rest by destination)',
    'monitoring or health checks from an internal host to an external service',
    'keep-alives of VPN, push or messaging clients that reconnect on a timer',
  ],
  params,
  async run(ctx) {
    const p: Params = ctx.params;
    const rows = await ctx.query<Row>(QUERY, {
      join_gap_ms: Math.round(p.joinGapSeconds * 1000),
      min_connections: p.minConnections,
      min_connections_floor: p.minConnectionsSampled,
      max_connections: p.maxConnectionsScored,
      max_pairs: p.maxPairs,
    });
    const out: Observation[] = [];
    for (const r of rows) {
      const rate = Math.max(1, Number(r.rate));
      const spanSeconds = Math.max(1, (Number(r.dataset_to) - Number(r.dataset_from)) / 1000);
      const prevalenceShare = r.internal_clients > 0 ? r.server_clients / r.internal_clients : 0;
      const prevalent =
        r.server_clients >=
        Math.max(p.prevalenceMinClients, Math.ceil(p.prevalenceShare * r.internal_clients));
      if (prevalent && p.prevalenceAction === 'skip') continue;
      const prevalence = {
        server_internal_clients: r.server_clients,
        internal_clients: r.internal_clients,
        share: Math.round(prevalenceShare * 1000) / 1000,
        prevalent,
        threshold_share: p.prevalenceShare,
        threshold_min_clients: p.prevalenceMinClients,
      };
      const common = {
        srcIp: r.client,
        dstIp: r.server,
        firstSeen: Number(r.first_ms),
        lastSeen: Number(r.last_ms),
        flows: r.new_flows,
        bytes: r.new_bytes,
        packets: r.new_packets,
        exporters: r.exporters,
        techniqueIds: ['T1071'] as const,
      };
      // A strobe: more connections than RITA's 86,400 per day (scaled to the dataset's span, at least an
      // hour of it, and divided by the sampling rate). Too fast to be scored, too fast to be benign polling.
      const strobeAt = Math.ceil((p.strobeConnections * Math.max(spanSeconds, 3_600)) / DAY / rate);
      if (r.connections >= strobeAt) {
        out.push({
          ...common,
          key: [r.client, r.server],
          title: `Strobe from ${r.client} to ${r.server}: ${r.connections} connections in ${fmtSeconds(Math.round(spanSeconds))}`,
          severity: 'medium',
          confidence: 0.6,
          evidence: {
            kind: 'strobe',
            connections: r.connections,
            span_seconds: Math.round(spanSeconds),
            server_ports: r.ports,
            protocols: r.protos,
            prevalence,
            sampling_rate: rate,
            threshold_strobe_connections: strobeAt,
            threshold_strobe_per_day: p.strobeConnections,
          },
        });
        continue;
      }
      const pairSpanSeconds = (Number(r.last_ms) - Number(r.first_ms)) / 1000;
      if (pairSpanSeconds < p.minSpanSeconds) continue;
      const latest = r.latest;
      const s = scoreBeacon({
        startsMs: latest.map((x) => -Number(x[0])),
        sizes: latest.map((x) => Number(x[1])),
        datasetFromMs: Number(r.dataset_from),
        datasetToMs: Number(r.dataset_to),
      });
      if (!s) continue;
      const score = prevalent ? Math.max(0, Math.round((s.score - 0.15) * 1000) / 1000) : s.score;
      if (score < p.minScore) continue;
      const dispersion = s.intervalMedian > 0 ? s.intervalMad / s.intervalMedian : 0;
      if (dispersion > p.maxIntervalDispersion) continue;
      out.push({
        ...common,
        key: [r.client, r.server],
        title: `Beaconing from ${r.client} to ${r.server}: score ${score.toFixed(2)}, ${r.connections} connections about every ${fmtSeconds(s.intervalMedian)}`,
        severity: severityOf(score),
        confidence: score,
        evidence: {
          kind: 'beacon',
          score,
          raw_score: s.score,
          ts_score: s.tsScore,
          interval_dispersion: Math.round(dispersion * 1000) / 1000,
          pair_span_seconds: Math.round(pairSpanSeconds),
          threshold_span_seconds: p.minSpanSeconds,
          threshold_interval_dispersion: p.maxIntervalDispersion,
          ds_score: s.dsScore,
          hist_score: s.histScore,
          dur_score: s.durScore,
          connections: r.connections,
          connections_scored: latest.length,
          unique_timestamps: s.uniqueTimestamps,
          interval_median_seconds: s.intervalMedian,
          interval_mad_seconds: s.intervalMad,
          interval_skew: s.intervalSkew,
          interval_mode_seconds: s.intervalMode,
          interval_mode_count: s.intervalModeCount,
          size_median_bytes: s.sizeMedian,
          size_mad_bytes: s.sizeMad,
          size_skew: s.sizeSkew,
          histogram: s.histogram,
          filled_bins: s.filledBins,
          longest_run_bins: s.longestRun,
          span_seconds: Math.round(spanSeconds),
          server_ports: r.ports,
          protocols: r.protos,
          prevalence,
          sampling_rate: rate,
          threshold_score: p.minScore,
          threshold_connections: p.minConnections,
        },
      });
    }
    return out;
  },
  mergeEvidence(previous, next) {
    return {
      ...next,
      max_score: Math.max(Number(previous.max_score ?? previous.score ?? 0), Number(next.score ?? 0)),
    };
  },
});
