import { createHash } from 'node:crypto';
import { displayAddress } from '../detect/networks.js';
import { insertRows, queryRows, type Store } from '../storage/clickhouse.js';
import {
  type Finding,
  type FindingStatus,
  MAX_RELATED_IPS,
  maxSeverity,
  type RunMode,
  type Severity,
  STATUSES,
} from './model.js';

/** One window's view of one piece of activity, ready to become (part of) a finding. */
export interface FindingUpdate {
  /** Detector-specific entities, joined (e.g. "10.0.0.5|192.0.2.7"). */
  readonly key: string;
  readonly title: string;
  readonly severity: Severity;
  readonly confidence: number;
  readonly techniqueIds: readonly string[];
  readonly tacticIds: readonly string[];
  readonly srcIp: string | null;
  readonly dstIp: string | null;
  readonly relatedIps: readonly string[];
  readonly firstSeen: number;
  readonly lastSeen: number;
  readonly flows: number;
  readonly bytes: number;
  readonly packets: number;
  readonly exporters: readonly string[];
  readonly evidence: Record<string, unknown>;
}

export interface DetectorRef {
  readonly id: string;
  readonly cooldownMs: number;
  mergeEvidence?(previous: Record<string, unknown>, next: Record<string, unknown>): Record<string, unknown>;
}

export interface RunRef {
  readonly runId: string;
  readonly mode: RunMode;
  /** Identifies the window: a window run again replaces its contribution instead of adding to it. */
  readonly windowKey: string;
  readonly forward: boolean;
}

/** One entry of a finding's history. */
export interface FindingEvent {
  readonly at: string;
  readonly actor: string;
  /** status, allowlist_rule_created, allowlist_rule_removed */
  readonly action: string;
  readonly from_status: string | null;
  readonly to_status: string | null;
  readonly comment: string;
  readonly rule_id: string | null;
}

export interface RecordResult {
  readonly created: string[];
  readonly updated: string[];
}

/** A findings row as ClickHouse returns it (JSONEachRow, times in ISO). */
interface FindingRow {
  id: string;
  version: number;
  detector: string;
  key: string;
  title: string;
  severity: Severity;
  confidence: number;
  status: FindingStatus;
  tactic_ids: string[];
  technique_ids: string[];
  src_ip: string | null;
  dst_ip: string | null;
  related_ips: string[];
  exporters: string[];
  first_seen: string;
  last_seen: string;
  flows: number;
  bytes: number;
  packets: number;
  evidence: string;
  windows: number;
  run_mode: RunMode;
  run_id: string;
  forward: number;
  created_at: string;
  updated_at: string;
}

const MAX_EXPORTERS = 16;

export const FINDING_COLUMNS =
  'id, version, detector, key, title, severity, confidence, status, tactic_ids, technique_ids, src_ip, dst_ip, related_ips, exporters, first_seen, last_seen, flows, bytes, packets, evidence, windows, run_mode, run_id, forward, created_at, updated_at';

/** Milliseconds as a DateTime64(3) literal ClickHouse parses in any input format. */
export function chTime(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

function ms(iso: string): number {
  return Date.parse(iso.endsWith('Z') ? iso : `${iso.replace(' ', 'T')}Z`);
}

/** Addresses into the IPv6 columns: IPv4 as ::ffff:a.b.c.d. */
function toColumn(address: string): string {
  return address.includes(':') ? address : `::ffff:${address}`;
}

/** The stable id of a new finding: detector, key and the cool-down bucket its activity began in. */
export function findingId(detector: string, key: string, firstSeen: number, cooldownMs: number): string {
  const bucket = Math.floor(firstSeen / Math.max(cooldownMs, 1000));
  const h = createHash('sha256').update(`${detector}\n${key}\n${bucket}`).digest('hex');
  // Shaped like a UUID (version nibble 8, RFC 9562's custom version), which SIEMs index well.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((Number.parseInt(h[16]!, 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export function rowToFinding(row: FindingRow): Finding {
  let evidence: Record<string, unknown> = {};
  try {
    evidence = JSON.parse(row.evidence) as Record<string, unknown>;
  } catch {
    evidence = { unparsed: row.evidence };
  }
  return {
    id: row.id,
    detector: row.detector,
    title: row.title,
    severity: row.severity,
    confidence: Math.round(Number(row.confidence) * 1000) / 1000,
    status: row.status,
    tactic_ids: row.tactic_ids,
    technique_ids: row.technique_ids,
    src_ip: displayAddress(row.src_ip),
    dst_ip: displayAddress(row.dst_ip),
    related_ips: row.related_ips.map((a) => displayAddress(a)).filter((a): a is string => a !== null),
    first_seen: new Date(ms(row.first_seen)).toISOString(),
    last_seen: new Date(ms(row.last_seen)).toISOString(),
    flows: Number(row.flows),
    bytes: Number(row.bytes),
    packets: Number(row.packets),
    evidence,
    created_at: new Date(ms(row.created_at)).toISOString(),
    updated_at: new Date(ms(row.updated_at)).toISOString(),
    key: row.key,
    exporters: row.exporters.map((a) => displayAddress(a)).filter((a): a is string => a !== null),
    windows: Number(row.windows),
    run_mode: row.run_mode,
    run_id: row.run_id,
    forward: Number(row.forward) === 1,
    version: Number(row.version),
  };
}

function findingToRow(f: Finding): Record<string, unknown> {
  return {
    id: f.id,
    version: f.version,
    detector: f.detector,
    key: f.key,
    title: f.title,
    severity: f.severity,
    confidence: f.confidence,
    status: f.status,
    tactic_ids: f.tactic_ids,
    technique_ids: f.technique_ids,
    src_ip: f.src_ip === null ? null : toColumn(f.src_ip),
    dst_ip: f.dst_ip === null ? null : toColumn(f.dst_ip),
    related_ips: f.related_ips.map(toColumn),
    exporters: f.exporters.map(toColumn),
    first_seen: chTime(Date.parse(f.first_seen)),
    last_seen: chTime(Date.parse(f.last_seen)),
    flows: f.flows,
    bytes: f.bytes,
    packets: f.packets,
    evidence: JSON.stringify(f.evidence),
    windows: f.windows,
    run_mode: f.run_mode,
    run_id: f.run_id,
    forward: f.forward ? 1 : 0,
    created_at: chTime(Date.parse(f.created_at)),
    updated_at: chTime(Date.parse(f.updated_at)),
  };
}

function union(a: readonly string[], b: readonly string[], max: number): string[] {
  const out = [...a];
  for (const x of b) {
    if (out.length >= max) break;
    if (!out.includes(x)) out.push(x);
  }
  return out;
}

/**
 * Findings in ClickHouse. Writes are serialised within the process (one queue), so a detector
 * update and an analyst's status change of the same finding cannot overwrite each other here; across
 * processes the later write wins (each write re-reads the row just before writing it).
 */
export class FindingStore {
  private queue: Promise<unknown> = Promise.resolve();
  private lastVersion = 0;

  constructor(private readonly store: Store) {}

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** A version above every version this process has written (ms clock, strictly increasing). */
  private nextVersion(previous = 0): number {
    this.lastVersion = Math.max(Date.now(), this.lastVersion + 1, previous + 1);
    return this.lastVersion;
  }

  /**
   * Folds one window's updates into findings: each update extends the finding of the same key whose
   * activity it touches (within the detector's cool-down, in traffic time), or opens a new one. The
   * window's contribution (flows, bytes, packets) replaces any earlier contribution of the same window.
   */
  record(detector: DetectorRef, updates: readonly FindingUpdate[], run: RunRef): Promise<RecordResult> {
    if (updates.length === 0) return Promise.resolve({ created: [], updated: [] });
    return this.exclusive(() => this.recordNow(detector, updates, run));
  }

  private async recordNow(
    detector: DetectorRef,
    updates: readonly FindingUpdate[],
    run: RunRef,
  ): Promise<RecordResult> {
    const cooldown = detector.cooldownMs;
    const keys = [...new Set(updates.map((u) => u.key))];
    const minFirst = Math.min(...updates.map((u) => u.firstSeen));
    const maxLast = Math.max(...updates.map((u) => u.lastSeen));
    const rows = await queryRows<FindingRow>(
      this.store,
      `SELECT ${FINDING_COLUMNS} FROM findings FINAL
       WHERE detector = {detector:String} AND key IN {keys:Array(String)}
         AND last_seen >= fromUnixTimestamp64Milli({from:Int64}, 'UTC')
         AND first_seen <= fromUnixTimestamp64Milli({to:Int64}, 'UTC')`,
      { detector: detector.id, keys, from: minFirst - cooldown, to: maxLast + cooldown },
    );
    const byKey = new Map<string, Finding[]>();
    for (const row of rows) {
      const f = rowToFinding(row);
      const list = byKey.get(f.key) ?? [];
      list.push(f);
      byKey.set(f.key, list);
    }

    // Group this window's updates by the finding they belong to.
    const now = Date.now();
    const touched = new Map<string, { base: Finding | null; updates: FindingUpdate[] }>();
    for (const u of updates) {
      const candidates = (byKey.get(u.key) ?? []).filter(
        (f) =>
          Date.parse(f.first_seen) - cooldown <= u.lastSeen &&
          Date.parse(f.last_seen) + cooldown >= u.firstSeen,
      );
      // A finding the analyst resolved takes new updates only for traffic inside its own span (the same
      // window run again); activity after it opens a new finding.
      const live = candidates.filter(
        (f) => f.status !== 'resolved' || u.firstSeen <= Date.parse(f.last_seen),
      );
      live.sort((a, b) => Date.parse(b.last_seen) - Date.parse(a.last_seen));
      const base = live[0] ?? null;
      const id = base?.id ?? findingId(detector.id, u.key, u.firstSeen, cooldown);
      const entry = touched.get(id) ?? { base, updates: [] };
      entry.updates.push(u);
      touched.set(id, entry);
      if (!base) {
        // Later updates of the same key in this batch join the finding just opened.
        const opened = provisional(id, detector.id, u, run, now);
        byKey.set(u.key, [...(byKey.get(u.key) ?? []), opened]);
      }
    }

    // Contributions first: the counters are recomputed from them.
    const contributions = [...touched].map(([id, { updates: list }]) => ({
      finding_id: id,
      window_key: run.windowKey,
      run_mode: run.mode,
      first_seen: chTime(Math.min(...list.map((u) => u.firstSeen))),
      last_seen: chTime(Math.max(...list.map((u) => u.lastSeen))),
      flows: list.reduce((s, u) => s + u.flows, 0),
      bytes: list.reduce((s, u) => s + u.bytes, 0),
      packets: list.reduce((s, u) => s + u.packets, 0),
      version: this.nextVersion(),
    }));
    await insertRows(this.store, 'finding_contributions', contributions);
    const totals = await this.totals([...touched.keys()]);

    const created: string[] = [];
    const updated: string[] = [];
    const out: Finding[] = [];
    for (const [id, { base, updates: list }] of touched) {
      const sum = totals.get(id);
      let f = base;
      for (const u of list) f = merge(f, id, detector, u, run, now);
      if (!f) continue;
      const status = base ? await this.currentStatus(id, base.status) : 'open';
      out.push({
        ...f,
        status,
        first_seen: new Date(Math.min(Date.parse(f.first_seen), sum?.firstSeen ?? Infinity)).toISOString(),
        last_seen: new Date(Math.max(Date.parse(f.last_seen), sum?.lastSeen ?? 0)).toISOString(),
        flows: sum?.flows ?? f.flows,
        bytes: sum?.bytes ?? f.bytes,
        packets: sum?.packets ?? f.packets,
        windows: sum?.windows ?? f.windows,
        version: this.nextVersion(base?.version ?? 0),
      });
      (base ? updated : created).push(id);
    }
    await insertRows(this.store, 'findings', out.map(findingToRow));
    return { created, updated };
  }

  /**
   * Counters of findings from their contributions. Scheduled and backfill runs select flows
   * differently (receive time against traffic time), so a backfill over an interval the scheduler
   * already covered sees the same flows again: per finding, the larger of the two sums is taken
   * instead of adding them.
   */
  private async totals(
    ids: readonly string[],
  ): Promise<
    Map<
      string,
      { flows: number; bytes: number; packets: number; windows: number; firstSeen: number; lastSeen: number }
    >
  > {
    const rows = await queryRows<{
      finding_id: string;
      run_mode: RunMode;
      flows: number;
      bytes: number;
      packets: number;
      windows: number;
      first_seen: string;
      last_seen: string;
    }>(
      this.store,
      `SELECT finding_id, run_mode, sum(flows) AS flows, sum(bytes) AS bytes, sum(packets) AS packets,
              count() AS windows, min(first_seen) AS first_seen, max(last_seen) AS last_seen
       FROM finding_contributions FINAL
       WHERE finding_id IN {ids:Array(String)}
       GROUP BY finding_id, run_mode`,
      { ids },
    );
    const out = new Map<
      string,
      { flows: number; bytes: number; packets: number; windows: number; firstSeen: number; lastSeen: number }
    >();
    for (const r of rows) {
      const prev = out.get(r.finding_id);
      const cur = {
        flows: Number(r.flows),
        bytes: Number(r.bytes),
        packets: Number(r.packets),
        windows: Number(r.windows),
        firstSeen: ms(r.first_seen),
        lastSeen: ms(r.last_seen),
      };
      if (!prev) {
        out.set(r.finding_id, cur);
        continue;
      }
      const bigger = cur.flows > prev.flows ? cur : prev;
      out.set(r.finding_id, {
        flows: bigger.flows,
        bytes: bigger.bytes,
        packets: bigger.packets,
        windows: prev.windows + cur.windows,
        firstSeen: Math.min(prev.firstSeen, cur.firstSeen),
        lastSeen: Math.max(prev.lastSeen, cur.lastSeen),
      });
    }
    return out;
  }

  /** The status from the latest analyst action (it may be newer than the row read at the start). */
  private async currentStatus(id: string, fallback: FindingStatus): Promise<FindingStatus> {
    const [row] = await queryRows<{ to_status: string }>(
      this.store,
      `SELECT to_status FROM finding_events WHERE finding_id = {id:String} AND action = 'status'
       ORDER BY at DESC LIMIT 1`,
      { id },
    );
    return row && (STATUSES as readonly string[]).includes(row.to_status)
      ? (row.to_status as FindingStatus)
      : fallback;
  }

  async get(id: string): Promise<Finding | null> {
    const [row] = await queryRows<FindingRow>(
      this.store,
      `SELECT ${FINDING_COLUMNS} FROM findings FINAL WHERE id = {id:String}`,
      { id },
      { readonly: true, timeoutSeconds: 30 },
    );
    return row ? rowToFinding(row) : null;
  }

  /** The analyst actions on a finding, oldest first (status changes, allowlist rules made or removed). */
  async history(id: string): Promise<FindingEvent[]> {
    const rows = await queryRows<{
      at: string;
      actor: string;
      action: string;
      from_status: string;
      to_status: string;
      comment: string;
      rule_id: string;
    }>(
      this.store,
      `SELECT at, actor, action, from_status, to_status, comment, rule_id FROM finding_events
       WHERE finding_id = {id:String} ORDER BY at, action != 'status', action LIMIT 1000`,
      { id },
      { readonly: true, timeoutSeconds: 30 },
    );
    return rows.map((r) => ({
      at: new Date(ms(r.at)).toISOString(),
      actor: r.actor,
      action: r.action,
      from_status: r.from_status || null,
      to_status: r.to_status || null,
      comment: r.comment,
      rule_id: r.rule_id || null,
    }));
  }

  /** Records an action on a finding that is not a status change (an allowlist rule made or removed). */
  async recordEvent(
    id: string,
    event: { actor: string; action: string; comment: string; ruleId?: string | null },
  ): Promise<void> {
    await insertRows(this.store, 'finding_events', [
      {
        finding_id: id,
        at: chTime(Date.now()),
        actor: event.actor,
        action: event.action,
        from_status: '',
        to_status: '',
        comment: event.comment,
        rule_id: event.ruleId ?? '',
      },
    ]);
  }

  /**
   * Changes a finding's status, keeping the change (with the comment and the acting user) in its
   * history. Returns the updated finding, or null when there is no such finding.
   */
  setStatus(id: string, status: FindingStatus, actor: string, comment: string): Promise<Finding | null> {
    return this.exclusive(async () => {
      const current = await this.get(id);
      if (!current) return null;
      const now = Date.now();
      await insertRows(this.store, 'finding_events', [
        {
          finding_id: id,
          at: chTime(now),
          actor,
          action: 'status',
          from_status: current.status,
          to_status: status,
          comment,
        },
      ]);
      const next: Finding = {
        ...current,
        status,
        updated_at: new Date(now).toISOString(),
        version: this.nextVersion(current.version),
      };
      await insertRows(this.store, 'findings', [findingToRow(next)]);
      return next;
    });
  }
}

function provisional(id: string, detector: string, u: FindingUpdate, run: RunRef, now: number): Finding {
  const iso = new Date(now).toISOString();
  return {
    id,
    detector,
    title: u.title,
    severity: u.severity,
    confidence: u.confidence,
    status: 'open',
    tactic_ids: [...u.tacticIds],
    technique_ids: [...u.techniqueIds],
    src_ip: u.srcIp,
    dst_ip: u.dstIp,
    related_ips: u.relatedIps.slice(0, MAX_RELATED_IPS),
    first_seen: new Date(u.firstSeen).toISOString(),
    last_seen: new Date(u.lastSeen).toISOString(),
    flows: u.flows,
    bytes: u.bytes,
    packets: u.packets,
    evidence: u.evidence,
    created_at: iso,
    updated_at: iso,
    key: u.key,
    exporters: u.exporters.slice(0, MAX_EXPORTERS),
    windows: 1,
    run_mode: run.mode,
    run_id: run.runId,
    forward: run.forward,
    version: 0,
  };
}

/** `base` (the finding so far, or null) extended by one update. */
function merge(
  base: Finding | null,
  id: string,
  detector: DetectorRef,
  u: FindingUpdate,
  run: RunRef,
  now: number,
): Finding {
  if (!base) return provisional(id, detector.id, u, run, now);
  const techniques = union(base.technique_ids, u.techniqueIds, 32);
  const tactics = union(base.tactic_ids, u.tacticIds, 16);
  return {
    ...base,
    title: u.title,
    severity: maxSeverity(base.severity, u.severity),
    confidence: Math.max(base.confidence, u.confidence),
    technique_ids: techniques,
    tactic_ids: tactics,
    src_ip: base.src_ip ?? u.srcIp,
    dst_ip: base.dst_ip ?? u.dstIp,
    related_ips: union(base.related_ips, u.relatedIps, MAX_RELATED_IPS),
    exporters: union(base.exporters, u.exporters, MAX_EXPORTERS),
    first_seen: new Date(Math.min(Date.parse(base.first_seen), u.firstSeen)).toISOString(),
    last_seen: new Date(Math.max(Date.parse(base.last_seen), u.lastSeen)).toISOString(),
    evidence: detector.mergeEvidence ? detector.mergeEvidence(base.evidence, u.evidence) : u.evidence,
    updated_at: new Date(now).toISOString(),
    run_mode: run.mode,
    run_id: run.runId,
    forward: run.forward,
  };
}
