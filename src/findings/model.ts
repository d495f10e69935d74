import { z } from 'zod';

/**
 * A finding: what a detector concluded from flows, about which hosts, over which stretch of traffic,
 * with the evidence an analyst needs. The JSON field names below are a public contract (the API, the
 * SIEM formats and outside checks use them): add fields, never rename.
 */
export const SEVERITIES = ['low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

export const STATUSES = ['open', 'acknowledged', 'resolved', 'suppressed'] as const;
export type FindingStatus = (typeof STATUSES)[number];

/** How the run that last touched a finding chose its flows. */
export const RUN_MODES = ['scheduled', 'backfill'] as const;
export type RunMode = (typeof RUN_MODES)[number];

export function severityRank(severity: Severity): number {
  return SEVERITIES.indexOf(severity);
}

export function maxSeverity(a: Severity, b: Severity): Severity {
  return severityRank(a) >= severityRank(b) ? a : b;
}

const isoTime = z.string().describe('ISO 8601 UTC time of the traffic');

export const findingSchema = z.object({
  id: z.string().describe('stable: derived from the detector, the key entities and a time bucket'),
  detector: z.string(),
  title: z.string(),
  severity: z.enum(SEVERITIES),
  confidence: z.number().min(0).max(1),
  status: z.enum(STATUSES),
  tactic_ids: z.array(z.string()),
  technique_ids: z.array(z.string()),
  src_ip: z.string().nullable().describe('primary source entity; IPv4 as a.b.c.d'),
  dst_ip: z.string().nullable().describe('primary destination entity'),
  related_ips: z.array(z.string()).describe('scan victims, flood sources, ...: at most 50'),
  first_seen: isoTime,
  last_seen: isoTime,
  flows: z.number().describe('flow records behind the finding'),
  bytes: z.number().describe('bytes of those flows, scaled by the sampling rate'),
  packets: z.number(),
  evidence: z.record(z.string(), z.unknown()).describe('detector-specific evidence'),
  created_at: z.string(),
  updated_at: z.string(),
  key: z.string().describe('the activity this finding follows (detector-specific entities)'),
  exporters: z.array(z.string()).describe('exporters that reported the flows'),
  windows: z.number().describe('detector runs that saw this activity'),
  run_mode: z.enum(RUN_MODES).describe('scheduled (live) or backfill, for the latest update'),
  run_id: z.string().describe('the run that last updated the finding'),
  forward: z.boolean().describe('false when made by a backfill asked not to forward to the SIEM'),
  version: z.number().describe('increases with every update of the finding'),
});

export type Finding = z.infer<typeof findingSchema>;

/** The most related IPs a finding keeps. */
export const MAX_RELATED_IPS = 50;
