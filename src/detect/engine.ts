import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { errorMessage, FlowsentryError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { RunMode } from '../findings/model.js';
import type { FindingStore, FindingUpdate } from '../findings/store.js';
import { type Store, select } from '../storage/clickhouse.js';
import { isTechniqueId, type TechniqueId, tacticsOf } from './attack.js';
import type { DetectorContext, DetectorDefinition, DetectorWindow, Observation } from './detector.js';
import { expandFlows } from './flows-source.js';
import { AddressSet, displayAddress } from './networks.js';
import type { RunLog, RunRecord } from './runs.js';
import type { ThreatIntel } from './threat-intel.js';

/** A detector as configured: its definition with the settings in force. */
export interface ConfiguredDetector {
  readonly definition: DetectorDefinition;
  enabled: boolean;
  intervalSeconds: number;
  lookbackSeconds: number;
  cooldownSeconds: number;
  params: Record<string, unknown>;
  allowlist: { readonly src: AddressSet; readonly dst: AddressSet };
}

export interface DetectorSettingsInput {
  readonly enabled?: boolean | undefined;
  readonly intervalSeconds?: number | undefined;
  readonly lookbackSeconds?: number | undefined;
  readonly cooldownSeconds?: number | undefined;
  readonly params?: Record<string, unknown> | undefined;
  readonly allowlist?: { readonly src?: readonly string[]; readonly dst?: readonly string[] } | undefined;
}

export interface EngineOptions {
  readonly internalNetworks: readonly string[];
  /** Allowlisted sources and destinations for every detector. */
  readonly allowlist: { readonly src: readonly string[]; readonly dst: readonly string[] };
  readonly detectors: Readonly<Record<string, DetectorSettingsInput>>;
  /** Seconds a detector query may run before the engine stops it. */
  readonly queryTimeoutSeconds: number;
  /** Scheduled windows end this long before now (flows still on their way to storage). */
  readonly lagSeconds: number;
}

/**
 * Allowlist rules made by analysts (src/findings/allowlist.ts keeps them in ClickHouse), read at the
 * start of every window: an observation matching a rule on both of its sides (null: any address) is
 * dropped, like one matching the configured allowlists.
 */
export interface SuppressionSource {
  rulesFor(
    detector: string,
  ): Promise<ReadonlyArray<{ readonly src: AddressSet | null; readonly dst: AddressSet | null }>>;
}

export interface EngineDeps {
  readonly store: Store;
  readonly findings: FindingStore;
  readonly runs: RunLog;
  readonly threatIntel: ThreatIntel;
  readonly log: Logger;
  /** Absent: only the configured allowlists apply. */
  readonly suppressions?: SuppressionSource | undefined;
}

export interface WindowResult {
  readonly detector: string;
  readonly window: DetectorWindow;
  readonly observations: number;
  readonly created: readonly string[];
  readonly updated: readonly string[];
  readonly durationMs: number;
  readonly error: string | null;
}

export interface BackfillRequest {
  readonly from: number;
  readonly to: number;
  /** Detector ids; absent: every enabled detector. */
  readonly detectors?: readonly string[] | undefined;
  /** false: the findings it makes or updates are not forwarded to the SIEM. */
  readonly forward?: boolean | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly onProgress?: ((done: number, total: number, detector: string) => void) | undefined;
}

export interface BackfillResult {
  readonly run_id: string;
  readonly findings_created: number;
  readonly findings_updated: number;
  readonly windows: number;
  readonly duration_ms: number;
  readonly detectors: ReadonlyArray<{
    readonly id: string;
    readonly windows: number;
    readonly findings_created: number;
    readonly findings_updated: number;
    readonly duration_ms: number;
    readonly errors: readonly string[];
  }>;
}

/** The next scheduled window of a detector, or when it will be due. */
export type ScheduleDecision =
  | { readonly due: true; readonly window: DetectorWindow }
  | { readonly due: false; readonly retryAt: number };

/**
 * Runs detectors over windows of flows and folds what they observe into findings. The schedulers
 * (in-process, BullMQ) and backfills call it; it keeps no schedule of its own.
 */
export class DetectionEngine {
  readonly detectors: ReadonlyMap<string, ConfiguredDetector>;
  readonly internal: AddressSet;
  private readonly globalAllowlist: { src: AddressSet; dst: AddressSet };
  readonly worker = `${hostname()}:${process.pid}`;
  /** Called after every window (metrics, logs). */
  onWindow: ((result: WindowResult) => void) | null = null;

  constructor(
    private readonly deps: EngineDeps,
    definitions: readonly DetectorDefinition[],
    private readonly options: EngineOptions,
  ) {
    this.internal = new AddressSet(options.internalNetworks);
    this.globalAllowlist = {
      src: new AddressSet(options.allowlist.src),
      dst: new AddressSet(options.allowlist.dst),
    };
    const byId = new Map(definitions.map((d) => [d.id, d]));
    for (const id of Object.keys(options.detectors)) {
      if (!byId.has(id)) {
        throw new FlowsentryError(
          'CONFIG_INVALID',
          `detection.detectors.${id}: no such detector (known: ${[...byId.keys()].join(', ')})`,
        );
      }
    }
    const configured = new Map<string, ConfiguredDetector>();
    for (const definition of definitions) {
      configured.set(definition.id, configure(definition, options.detectors[definition.id] ?? {}));
    }
    this.detectors = configured;
  }

  get lagMs(): number {
    return this.options.lagSeconds * 1000;
  }

  detector(id: string): ConfiguredDetector {
    const d = this.detectors.get(id);
    if (!d) throw new FlowsentryError('DETECTOR_UNKNOWN', `no detector "${id}"`);
    return d;
  }

  /** Applies new settings to a detector (validated like the configuration); returns it. */
  reconfigure(id: string, input: DetectorSettingsInput, path = `detectors.${id}`): ConfiguredDetector {
    const current = this.detector(id);
    const next = configure(
      current.definition,
      {
        enabled: input.enabled ?? current.enabled,
        intervalSeconds: input.intervalSeconds ?? current.intervalSeconds,
        lookbackSeconds: input.lookbackSeconds ?? current.lookbackSeconds,
        cooldownSeconds: input.cooldownSeconds ?? current.cooldownSeconds,
        params: { ...current.params, ...(input.params ?? {}) },
        allowlist: input.allowlist ?? { src: current.allowlist.src.cidrs, dst: current.allowlist.dst.cidrs },
      },
      path,
    );
    current.enabled = next.enabled;
    current.intervalSeconds = next.intervalSeconds;
    current.lookbackSeconds = next.lookbackSeconds;
    current.cooldownSeconds = next.cooldownSeconds;
    current.params = next.params;
    current.allowlist = next.allowlist;
    return current;
  }

  /**
   * Where a detector's next scheduled window lies. Windows are aligned to multiples of the interval
   * (epoch-based, so every process computes the same ones) and start at the watermark; the first run
   * ever starts one interval before now. A window is due once its end is `lag` in the past and storage
   * holds everything received before its end (`horizon`: the oldest receive time still queued). A
   * detector behind schedule catches up in windows of up to max(interval, lookback).
   */
  nextWindow(id: string, watermark: number | null, now: number, horizon: number): ScheduleDecision {
    const d = this.detector(id);
    const interval = d.intervalSeconds * 1000;
    const limit = Math.min(now - this.lagMs, horizon);
    const from = watermark ?? Math.floor((now - this.lagMs) / interval) * interval - interval;
    let to = from + interval;
    if (to > limit) return { due: false, retryAt: Math.max(to + this.lagMs, now + 1000) };
    const widest = Math.max(interval, d.lookbackSeconds * 1000);
    while (to + interval <= limit && to + interval - from <= widest) to += interval;
    return { due: true, window: this.window(d, 'scheduled', from, to, null) };
  }

  private window(
    d: ConfiguredDetector,
    mode: RunMode,
    from: number,
    to: number,
    range: DetectorWindow['range'],
  ): DetectorWindow {
    const extra = Math.max(0, d.lookbackSeconds - d.intervalSeconds) * 1000;
    return { mode, from, to, contextFrom: from - extra, range };
  }

  /**
   * Runs one detector over one window, folds its observations into findings and records the run
   * (the scheduler's watermark moves only with a successful scheduled run).
   */
  async runWindow(
    id: string,
    window: DetectorWindow,
    run: { runId?: string; forward?: boolean; signal?: AbortSignal } = {},
  ): Promise<WindowResult> {
    const d = this.detector(id);
    const runId = run.runId ?? randomUUID();
    const started = Date.now();
    const log = this.deps.log.child({ detector: id, run_id: runId });
    let observations = 0;
    let created: readonly string[] = [];
    let updated: readonly string[] = [];
    let error: string | null = null;
    try {
      this.deps.threatIntel.refresh();
      const ctx = this.context(d, window, log, run.signal ?? new AbortController().signal);
      const rules = (await this.deps.suppressions?.rulesFor(id)) ?? [];
      const found = await d.definition.run(ctx);
      const updates = this.toUpdates(d, found, rules);
      observations = updates.length;
      const windowKey = `${window.mode}:${window.from}-${window.to}`;
      ({ created, updated } = await this.deps.findings.record(
        {
          id,
          cooldownMs: d.cooldownSeconds * 1000,
          ...(d.definition.mergeEvidence ? { mergeEvidence: d.definition.mergeEvidence } : {}),
        },
        updates,
        { runId, mode: window.mode, windowKey, forward: run.forward ?? true },
      ));
    } catch (e) {
      error = errorMessage(e);
      log.error({ err: error, from: new Date(window.from), to: new Date(window.to) }, 'detector run failed');
    }
    const finished = Date.now();
    const record: RunRecord = {
      runId,
      detector: id,
      mode: window.mode,
      windowFrom: window.from,
      windowTo: window.to,
      startedAt: started,
      finishedAt: finished,
      observations,
      findingsCreated: created.length,
      findingsUpdated: updated.length,
      error,
      worker: this.worker,
    };
    await this.deps.runs.record(record);
    const result: WindowResult = {
      detector: id,
      window,
      observations,
      created,
      updated,
      durationMs: finished - started,
      error,
    };
    if (created.length > 0 || error !== null) {
      log.info(
        {
          window_from: new Date(window.from),
          window_to: new Date(window.to),
          created: created.length,
          updated: updated.length,
          ms: result.durationMs,
        },
        'detector run',
      );
    }
    this.onWindow?.(result);
    return result;
  }

  /** Runs detectors over a past interval of traffic time, in chunks of max(interval, lookback) per detector. */
  async backfill(request: BackfillRequest): Promise<BackfillResult> {
    const runId = randomUUID();
    const started = Date.now();
    const ids =
      request.detectors ?? [...this.detectors.values()].filter((d) => d.enabled).map((d) => d.definition.id);
    for (const id of ids) this.detector(id);
    const range = { from: request.from, to: request.to };
    const plan = ids.map((id) => {
      const d = this.detector(id);
      const chunk = Math.max(d.intervalSeconds, d.lookbackSeconds) * 1000;
      const windows: DetectorWindow[] = [];
      // Chunks aligned to multiples of their size, so that two backfills over overlapping intervals
      // replace each other's contributions instead of adding them (except in the partial edge chunks).
      for (let from = range.from; from < range.to; ) {
        const to = Math.min(range.to, Math.floor(from / chunk) * chunk + chunk);
        windows.push(this.window(d, 'backfill', from, to, range));
        from = to;
      }
      return { id, windows };
    });
    const total = plan.reduce((s, p) => s + p.windows.length, 0);
    let done = 0;
    const allCreated = new Set<string>();
    const allUpdated = new Set<string>();
    const perDetector: Array<BackfillResult['detectors'][number]> = [];
    for (const { id, windows } of plan) {
      const t0 = Date.now();
      const created = new Set<string>();
      const updated = new Set<string>();
      const errors: string[] = [];
      for (const window of windows) {
        if (request.signal?.aborted) throw new FlowsentryError('RUN_CANCELLED', 'backfill cancelled');
        const r = await this.runWindow(id, window, {
          runId,
          forward: request.forward ?? true,
          ...(request.signal ? { signal: request.signal } : {}),
        });
        for (const f of r.created) created.add(f);
        for (const f of r.updated) if (!created.has(f)) updated.add(f);
        if (r.error) errors.push(r.error);
        request.onProgress?.(++done, total, id);
      }
      for (const f of created) allCreated.add(f);
      for (const f of updated) if (!allCreated.has(f)) allUpdated.add(f);
      perDetector.push({
        id,
        windows: windows.length,
        findings_created: created.size,
        findings_updated: updated.size,
        duration_ms: Date.now() - t0,
        errors: [...new Set(errors)],
      });
    }
    return {
      run_id: runId,
      findings_created: allCreated.size,
      findings_updated: allUpdated.size,
      windows: total,
      duration_ms: Date.now() - started,
      detectors: perDetector,
    };
  }

  private context(
    d: ConfiguredDetector,
    window: DetectorWindow,
    log: Logger,
    signal: AbortSignal,
  ): DetectorContext<Record<string, unknown>> {
    const { store } = this.deps;
    const timeoutSeconds = this.options.queryTimeoutSeconds;
    const internal = this.internal;
    return {
      params: d.params,
      window,
      internal,
      threatIntel: this.deps.threatIntel,
      log,
      signal,
      store,
      query<T>(sql: string, params: Record<string, unknown> = {}): Promise<T[]> {
        const expanded = expandFlows(sql, window, internal);
        return select<T>(store, expanded.sql, {
          params: { ...expanded.params, ...params },
          readonly: true,
          timeoutSeconds,
          signal,
        });
      },
    };
  }

  private toUpdates(
    d: ConfiguredDetector,
    observations: readonly Observation[],
    rules: Awaited<ReturnType<SuppressionSource['rulesFor']>> = [],
  ): FindingUpdate[] {
    const out: FindingUpdate[] = [];
    const allowed = new Set<string>(d.definition.techniques);
    for (const o of observations) {
      if (!(o.flows > 0)) continue;
      const srcIp = displayAddress(o.srcIp);
      const dstIp = displayAddress(o.dstIp);
      if (this.allowlisted(d, srcIp, dstIp)) continue;
      if (rules.some((r) => (r.src === null || r.src.has(srcIp)) && (r.dst === null || r.dst.has(dstIp))))
        continue;
      const techniques = [...(o.techniqueIds ?? d.definition.techniques)];
      for (const t of techniques) {
        if (!allowed.has(t) || !isTechniqueId(t)) {
          throw new Error(`detector ${d.definition.id} reported technique ${t}, not among its techniques`);
        }
      }
      let firstSeen = toMs(o.firstSeen);
      let lastSeen = toMs(o.lastSeen);
      if (lastSeen < firstSeen) [firstSeen, lastSeen] = [lastSeen, firstSeen];
      const related: string[] = [];
      for (const ip of o.relatedIps ?? []) {
        const a = displayAddress(ip);
        if (a && a !== srcIp && a !== dstIp && !related.includes(a)) related.push(a);
      }
      out.push({
        key: o.key.map((k) => unmapText(String(k))).join('|'),
        title: unmapText(o.title),
        severity: o.severity ?? d.definition.severity,
        confidence: Math.min(1, Math.max(0, o.confidence)),
        techniqueIds: techniques,
        tacticIds: tacticsOf(techniques as TechniqueId[]),
        srcIp,
        dstIp,
        relatedIps: related,
        firstSeen,
        lastSeen,
        flows: Math.round(o.flows),
        bytes: Math.max(0, Math.round(o.bytes)),
        packets: Math.max(0, Math.round(o.packets)),
        exporters: (o.exporters ?? []).map((e) => displayAddress(e)).filter((e): e is string => e !== null),
        evidence: unmapDeep(o.evidence) as Record<string, unknown>,
      });
    }
    return out;
  }

  private allowlisted(d: ConfiguredDetector, src: string | null, dst: string | null): boolean {
    return (
      d.allowlist.src.has(src) ||
      d.allowlist.dst.has(dst) ||
      this.globalAllowlist.src.has(src) ||
      this.globalAllowlist.dst.has(dst)
    );
  }
}

const MAPPED_IPV4 = /::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})\b/gi;

/**
 * IPv4 as a.b.c.d wherever a detector wrote ClickHouse's ::ffff:a.b.c.d (titles, keys, evidence), as
 * the finding's own address fields are written: what analysts read and SIEM rules match.
 */
export function unmapText(text: string): string {
  return text.replace(MAPPED_IPV4, '$1');
}

function unmapDeep(value: unknown): unknown {
  if (typeof value === 'string') return unmapText(value);
  if (Array.isArray(value)) return value.map(unmapDeep);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unmapDeep(v)]));
  }
  return value;
}

function toMs(value: number | string): number {
  if (typeof value === 'number') return value;
  return Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value.replace(' ', 'T')}Z`);
}

function configure(
  definition: DetectorDefinition,
  input: DetectorSettingsInput,
  path = `detection.detectors.${definition.id}`,
): ConfiguredDetector {
  const parsed = definition.params.safeParse(input.params ?? {});
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (i) => `${[path, 'params', ...i.path.map(String)].join('.')}: ${i.message}`,
    );
    throw new FlowsentryError('CONFIG_INVALID', `invalid detector parameters:\n  ${problems.join('\n  ')}`);
  }
  const intervalSeconds = input.intervalSeconds ?? definition.intervalSeconds;
  const lookbackSeconds = Math.max(input.lookbackSeconds ?? definition.lookbackSeconds, intervalSeconds);
  const cidrs = (list: readonly string[] | undefined, field: string): AddressSet => {
    try {
      return new AddressSet(list ?? []);
    } catch (error) {
      throw new FlowsentryError('CONFIG_INVALID', `${path}.allowlist.${field}: ${errorMessage(error)}`);
    }
  };
  return {
    definition,
    enabled: input.enabled ?? true,
    intervalSeconds,
    lookbackSeconds,
    cooldownSeconds: input.cooldownSeconds ?? definition.cooldownSeconds,
    params: parsed.data,
    allowlist: { src: cidrs(input.allowlist?.src, 'src'), dst: cidrs(input.allowlist?.dst, 'dst') },
  };
}
