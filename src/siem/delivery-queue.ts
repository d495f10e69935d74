import type { Finding } from '../findings/model.js';

export interface QueuedFinding {
  readonly finding: Finding;
  /** Sent before and sent again after a connection error: not held back by the update interval. */
  readonly resend: boolean;
}

interface LastSent {
  readonly at: number;
  readonly version: number;
  /** null: not known (remembered across a restart). */
  readonly severity: Finding['severity'] | null;
  readonly status: Finding['status'] | null;
}

/**
 * The finding versions waiting for one destination, in version order (the order they were written),
 * at most one per finding: a newer version of a finding replaces the one waiting, so the latest state
 * wins. A finding that went out less than `updateIntervalMs` ago waits until the interval has passed,
 * unless its severity or status changed (an escalation or an analyst's decision goes out at once).
 * A version at or below one already sent is stale and never queued.
 */
export class DeliveryQueue {
  private readonly items: QueuedFinding[] = [];
  private readonly byId = new Map<string, QueuedFinding>();
  private readonly lastSent = new Map<string, LastSent>();

  constructor(private readonly updateIntervalMs: number) {}

  get size(): number {
    return this.items.length;
  }

  /**
   * Queues a version. Returns what became of it: queued, stale (not newer than what was sent or is
   * waiting), or replaced (it took the place of an older waiting version, returned).
   */
  offer(
    finding: Finding,
    resend = false,
  ): { outcome: 'queued' | 'stale' } | { outcome: 'replaced'; previous: Finding } {
    const last = this.lastSent.get(finding.id);
    if (!resend && last && finding.version <= last.version) return { outcome: 'stale' };
    const waiting = this.byId.get(finding.id);
    if (waiting && waiting.finding.version >= finding.version) return { outcome: 'stale' };
    if (waiting) this.remove(waiting);
    this.insert({ finding, resend: resend && !waiting });
    return waiting ? { outcome: 'replaced', previous: waiting.finding } : { outcome: 'queued' };
  }

  private insert(item: QueuedFinding): void {
    // Binary search for the first item with a higher version: most inserts land at the end.
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.items[mid]!.finding.version <= item.finding.version) lo = mid + 1;
      else hi = mid;
    }
    this.items.splice(lo, 0, item);
    this.byId.set(item.finding.id, item);
  }

  private remove(item: QueuedFinding): void {
    const i = this.items.indexOf(item);
    if (i >= 0) this.items.splice(i, 1);
    if (this.byId.get(item.finding.id) === item) this.byId.delete(item.finding.id);
  }

  private dueAt(item: QueuedFinding): number {
    if (item.resend) return 0;
    const last = this.lastSent.get(item.finding.id);
    if (!last) return 0;
    const changed =
      (last.severity !== null && last.severity !== item.finding.severity) ||
      (last.status !== null && last.status !== item.finding.status);
    if (changed) return 0;
    return last.at + this.updateIntervalMs;
  }

  /** The first waiting version (in version order) that may go out at `now`. */
  next(now: number): QueuedFinding | null {
    for (const item of this.items) if (this.dueAt(item) <= now) return item;
    return null;
  }

  /** When the next held version may go out (Infinity: nothing waits). */
  nextDueAt(): number {
    let earliest = Number.POSITIVE_INFINITY;
    for (const item of this.items) earliest = Math.min(earliest, this.dueAt(item));
    return earliest;
  }

  /** The item was written: it leaves the queue and starts the finding's update interval. */
  sent(item: QueuedFinding, now: number): void {
    this.remove(item);
    const last = this.lastSent.get(item.finding.id);
    if (last && last.version >= item.finding.version) return;
    this.lastSent.set(item.finding.id, {
      at: item.resend && last ? last.at : now,
      version: item.finding.version,
      severity: item.finding.severity,
      status: item.finding.status,
    });
  }

  /** Removes an item that cannot be sent (it could not be rendered, or the transport refused its size). */
  drop(item: QueuedFinding): void {
    this.remove(item);
  }

  /** Findings known to have gone out before (after a restart), so older versions are not sent again. */
  remember(id: string, version: number, at: number): void {
    const last = this.lastSent.get(id);
    if (last && last.version >= version) return;
    this.lastSent.set(id, { at, version, severity: null, status: null });
  }

  /** Lowest waiting version (Infinity: none). */
  minVersion(): number {
    return this.items[0]?.finding.version ?? Number.POSITIVE_INFINITY;
  }

  /** Oldest updated_at (epoch ms) among waiting versions (Infinity: none). */
  oldestUpdate(): number {
    let oldest = Number.POSITIVE_INFINITY;
    for (const item of this.items) oldest = Math.min(oldest, Date.parse(item.finding.updated_at));
    return oldest;
  }

  /** Forgets findings sent longer than `keepMs` ago (they can no longer be held or be stale). */
  prune(now: number, keepMs: number): void {
    const horizon = now - Math.max(keepMs, this.updateIntervalMs);
    for (const [id, last] of this.lastSent) if (last.at < horizon) this.lastSent.delete(id);
  }
}
