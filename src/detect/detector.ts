import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import type { Logger } from '../common/logger.js';
import type { RunMode, Severity } from '../findings/model.js';
import type { Store } from '../storage/clickhouse.js';
import type { TechniqueId } from './attack.js';
import type { AddressSet } from './networks.js';
import type { ThreatIntel } from './threat-intel.js';

/**
 * The flows one detector run looks at. New flows are those whose event time is in [from, to); the
 * detector may also read the context before them, from `contextFrom`, to evaluate thresholds over a
 * longer stretch than one interval (a slow brute force, a beacon over a day). Event time is
 * `time_received` in scheduled runs (each flow is new in exactly one window, however late its exporter
 * sent it) and the flow's own end time, clamped to the range, in backfills. Times are epoch ms.
 */
export interface DetectorWindow {
  readonly mode: RunMode;
  readonly from: number;
  readonly to: number;
  readonly contextFrom: number;
  /** Backfill: the interval asked for; flows outside it are never read. */
  readonly range: { readonly from: number; readonly to: number } | null;
}

/** What a detector reports for one piece of activity in one window; the engine turns it into a finding. */
export interface Observation {
  /**
   * The entities that make this "the same activity" across windows (e.g. scanner and victim): with
   * the detector id, the key of the finding it extends or opens.
   */
  readonly key: readonly (string | number)[];
  readonly title: string;
  /** Defaults to the detector's severity. */
  readonly severity?: Severity;
  /** 0..1: how sure the detector is that this is what the title says. */
  readonly confidence: number;
  /** A subset of the detector's techniques (defaults to all of them). */
  readonly techniqueIds?: readonly TechniqueId[];
  readonly srcIp: string | null;
  readonly dstIp: string | null;
  readonly relatedIps?: readonly string[];
  /** Traffic times of the activity (epoch ms, or an ISO time as ClickHouse prints it). */
  readonly firstSeen: number | string;
  readonly lastSeen: number | string;
  /** Flows, bytes and packets of the activity among this window's new flows (not the context). */
  readonly flows: number;
  readonly bytes: number;
  readonly packets: number;
  readonly exporters?: readonly string[];
  /** Detector-specific: ports touched, beacon period and jitter, top peers, thresholds used... */
  readonly evidence: Record<string, unknown>;
}

export interface DetectorContext<P> {
  readonly params: P;
  readonly window: DetectorWindow;
  /** The internal networks (FLOWSENTRY_INTERNAL_NETWORKS). */
  readonly internal: AddressSet;
  readonly threatIntel: ThreatIntel;
  readonly log: Logger;
  readonly signal: AbortSignal;
  /**
   * Runs a read-only query in which `{{flows}}` stands for the window's flows: every column of
   * `flows` plus `event_time` (DateTime64(3)), `in_window` (1 for this window's new flows, 0 for
   * context), `src_internal` and `dst_internal` (1 when the address is in an internal network). The
   * window's bounds are also parameters: {window_from:Int64}, {window_to:Int64}, {context_from:Int64}
   * (epoch ms), and {window_seconds:Float64}. Other values go in `params`, as `{name:Type}`.
   */
  query<T>(sql: string, params?: Record<string, unknown>): Promise<T[]>;
  /** The store itself, for detectors that keep or read state beyond flows (read-only use expected). */
  readonly store: Store;
}

export interface DetectorDefinition<P extends Record<string, unknown> = Record<string, unknown>> {
  /** kebab-case, stable forever (findings, configuration and the SIEM refer to it). */
  readonly id: string;
  readonly title: string;
  readonly description: string;
  /** Every technique its findings may carry; the tactics follow from them. */
  readonly techniques: readonly TechniqueId[];
  readonly severity: Severity;
  readonly intervalSeconds: number;
  /** How far back each run reads for context (≥ intervalSeconds). */
  readonly lookbackSeconds: number;
  /** Activity that pauses longer than this (in traffic time) opens a new finding instead of extending one. */
  readonly cooldownSeconds: number;
  /** Known benign look-alikes, for the README and for analysts. */
  readonly falsePositives: readonly string[];
  /** Parameters with their defaults; the configuration and the API are validated against it. */
  readonly params: z.ZodType<P, unknown>;
  run(ctx: DetectorContext<P>): Promise<Observation[]>;
  /**
   * Combines the evidence of a finding with that of a new window of the same activity (default: the
   * new window's evidence replaces the old).
   */
  mergeEvidence?(previous: Record<string, unknown>, next: Record<string, unknown>): Record<string, unknown>;
}

/** Identity helper that keeps the parameter type (and checks the definition at compile time). */
export function defineDetector<P extends Record<string, unknown>>(
  definition: DetectorDefinition<P>,
): DetectorDefinition<P> {
  return definition;
}

/** Reads a SQL file next to the detector's module (copied into dist/ by the build). */
export function loadSql(moduleUrl: string, name: string): string {
  return readFileSync(join(dirname(fileURLToPath(moduleUrl)), name), 'utf8');
}
