import { TACTICS, TECHNIQUES } from '../../detect/attack.js';
import type { Finding, Severity } from '../../findings/model.js';
import { jsonText } from './text.js';

/**
 * One finding version as the formats see it: the finding's fields plus what the forwarder adds
 * (the link, the detector's title, whether this is the first message about it). The truncation
 * ladder (render.ts) shortens the optional parts of this view, never the header or required fields.
 */
export interface FindingView {
  readonly id: string;
  readonly version: number;
  /** created: the finding's first version; updated: any later one (new last_seen, status...). */
  readonly action: 'created' | 'updated';
  readonly detector: string;
  /** The detector's title ("Vertical port scan"), or its id when unknown. */
  readonly detectorTitle: string;
  readonly title: string;
  readonly severity: Severity;
  readonly confidence: number;
  readonly status: Finding['status'];
  readonly tacticIds: readonly string[];
  readonly techniqueIds: readonly string[];
  readonly srcIp: string | null;
  readonly dstIp: string | null;
  readonly relatedIps: readonly string[];
  readonly exporters: readonly string[];
  readonly firstSeen: string;
  readonly lastSeen: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly flows: number;
  readonly bytes: number;
  readonly packets: number;
  readonly windows: number;
  readonly runMode: Finding['run_mode'];
  readonly link: string;
  /** The evidence as JSON text; null once dropped to fit the size limit. */
  readonly evidence: string | null;
  /** true when evidence (or other optional parts) were shortened to fit the size limit. */
  readonly truncated: boolean;
  /** The size limit's first step: formats leave out what only decorates or repeats another field. */
  readonly compact: boolean;
}

export interface ViewContext {
  /** `${publicUrl}/api/v1/findings/` */
  readonly linkBase: string;
  readonly detectorTitle: (id: string) => string | undefined;
}

export function viewOf(f: Finding, ctx: ViewContext): FindingView {
  let evidence: string;
  try {
    evidence = jsonText(f.evidence ?? {});
  } catch {
    evidence = '{"unserialisable":true}';
  }
  return {
    id: f.id,
    version: f.version,
    action: f.created_at === f.updated_at ? 'created' : 'updated',
    detector: f.detector,
    detectorTitle: ctx.detectorTitle(f.detector) ?? f.detector,
    title: f.title,
    severity: f.severity,
    confidence: f.confidence,
    status: f.status,
    tacticIds: f.tactic_ids,
    techniqueIds: f.technique_ids,
    srcIp: f.src_ip,
    dstIp: f.dst_ip,
    relatedIps: f.related_ips,
    exporters: f.exporters,
    firstSeen: f.first_seen,
    lastSeen: f.last_seen,
    createdAt: f.created_at,
    updatedAt: f.updated_at,
    flows: f.flows,
    bytes: f.bytes,
    packets: f.packets,
    windows: f.windows,
    runMode: f.run_mode,
    link: `${ctx.linkBase}${encodeURIComponent(f.id)}`,
    evidence,
    truncated: false,
    compact: false,
  };
}

/** Syslog severity (RFC 5424 §6.2.1) of a finding severity: notice, warning, error, critical. */
export const SYSLOG_SEVERITY: Record<Severity, number> = { low: 5, medium: 4, high: 3, critical: 2 };

/** CEF and LEEF severity, 0-10 / 1-10 (ArcSight bands: 0-3 low, 4-6 medium, 7-8 high, 9-10 very high). */
export const TEN_POINT_SEVERITY: Record<Severity, number> = { low: 3, medium: 5, high: 8, critical: 10 };

/** ECS event.risk_score 0-100: the defaults Elastic's detection rules give each severity. */
export const RISK_SCORE: Record<Severity, number> = { low: 21, medium: 47, high: 73, critical: 99 };

/** ECS event.severity: the severity's rank, 1 (low) to 4 (critical), as the findings table stores it. */
export const SEVERITY_NUMBER: Record<Severity, number> = { low: 1, medium: 2, high: 3, critical: 4 };

export function tacticName(id: string): string {
  return Object.hasOwn(TACTICS, id) ? TACTICS[id as keyof typeof TACTICS] : id;
}

export function techniqueName(id: string): string {
  return Object.hasOwn(TECHNIQUES, id) ? TECHNIQUES[id as keyof typeof TECHNIQUES].name : id;
}

/** The time as epoch milliseconds (CEF rt/start/end). */
export function epochMs(iso: string): number {
  return Date.parse(iso);
}
