import type { Component } from '../common/component.js';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { DetectionEngine } from './engine.js';
import type { RunLog } from './runs.js';

/** Epoch ms before which everything received is in storage (the oldest receive time still queued). */
export type StorageHorizon = () => number;

/** What both schedulers offer the service and the API. */
/** Detector work by state, for the metrics (flowsentry_scheduler_jobs). */
export const JOB_STATES = ['waiting', 'active', 'delayed', 'failed'] as const;
export type JobCounts = Record<(typeof JOB_STATES)[number], number>;

export interface Scheduler extends Component {
  readonly kind: 'in-process' | 'bullmq';
  /** Re-reads a detector's settings (enabled, interval) after a change. */
  refresh(id: string): Promise<void>;
  /**
   * Detector work by state. In-process: detectors due and waiting for a free slot, running, planned
   * on a timer, and retrying after a failed window. BullMQ: the queue's jobs (shared by every process
   * on that Redis), failed meaning out of attempts.
   */
  jobs(): Promise<JobCounts>;
}

const RETRY_MIN_MS = 5_000;
const RETRY_MAX_MS = 300_000;

/**
 * Runs every enabled detector on its own interval inside this process. Each detector has a timer for
 * its next window; due detectors wait in one queue served `concurrency` at a time (the detectors share
 * the store's CPU with ingest). The watermark comes from the run log at start, so a restart resumes
 * with the first window not yet run. A failed window is retried with backoff and the watermark stays.
 */
export class InProcessScheduler implements Scheduler {
  readonly name = 'scheduler';
  readonly kind = 'in-process' as const;
  private readonly watermarks = new Map<string, number | null>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly failures = new Map<string, number>();
  private readonly queued = new Set<string>();
  private readonly queue: string[] = [];
  private readonly running = new Set<Promise<void>>();
  private readonly active = new Set<string>();
  private readonly abort = new AbortController();
  private stopped = false;

  constructor(
    private readonly engine: DetectionEngine,
    private readonly runs: RunLog,
    private readonly horizon: StorageHorizon,
    private readonly log: Logger,
    private readonly concurrency = 1,
  ) {}

  async start(): Promise<void> {
    const marks = await this.runs.watermarks();
    for (const [id, d] of this.engine.detectors) {
      this.watermarks.set(id, marks.get(id) ?? null);
      if (d.enabled) this.plan(id);
    }
    this.log.info(
      {
        detectors: [...this.engine.detectors.values()].filter((d) => d.enabled).length,
        concurrency: this.concurrency,
      },
      'detector scheduler started (in-process)',
    );
  }

  async jobs(): Promise<JobCounts> {
    return {
      waiting: this.queue.length,
      active: this.active.size,
      delayed: this.timers.size,
      failed: [...this.failures.values()].filter((n) => n > 0).length,
    };
  }

  async refresh(id: string): Promise<void> {
    if (this.stopped) return;
    clearTimeout(this.timers.get(id));
    this.timers.delete(id);
    if (!this.watermarks.has(id)) this.watermarks.set(id, await this.runs.watermark(id));
    if (this.engine.detector(id).enabled) this.plan(id);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.queue.length = 0;
    this.queued.clear();
    // Let the windows under way finish (their findings and run rows are written); cut them off after 15 s.
    const finishing = Promise.all(this.running);
    const timer = setTimeout(() => this.abort.abort(), 15_000);
    await finishing;
    clearTimeout(timer);
  }

  private plan(id: string): void {
    if (this.stopped || this.queued.has(id) || this.active.has(id)) return;
    const d = this.engine.detector(id);
    if (!d.enabled) return;
    const decision = this.engine.nextWindow(id, this.watermarks.get(id) ?? null, Date.now(), this.horizon());
    if (decision.due) {
      this.queued.add(id);
      this.queue.push(id);
      this.pump();
      return;
    }
    this.after(id, decision.retryAt - Date.now());
  }

  private after(id: string, ms: number): void {
    clearTimeout(this.timers.get(id));
    const timer = setTimeout(
      () => {
        this.timers.delete(id);
        this.plan(id);
      },
      Math.max(100, Math.min(ms, 2 ** 31 - 1)),
    );
    timer.unref();
    this.timers.set(id, timer);
  }

  private pump(): void {
    while (!this.stopped && this.running.size < this.concurrency && this.queue.length > 0) {
      const id = this.queue.shift()!;
      this.queued.delete(id);
      this.active.add(id);
      let next: number | null = RETRY_MIN_MS;
      const job: Promise<void> = this.runOne(id)
        .then((delay) => {
          next = delay;
        })
        .catch((error: unknown) =>
          this.log.error({ detector: id, err: errorMessage(error) }, 'scheduler error'),
        )
        .finally(() => {
          this.running.delete(job);
          this.active.delete(id);
          // Planned only now that the detector is no longer active, so that plan() takes it.
          if (next === 0) this.plan(id);
          else if (next !== null) this.after(id, next);
          this.pump();
        });
      this.running.add(job);
    }
  }

  /** Runs the detector's due window; returns the delay before planning it again (null: stopped). */
  private async runOne(id: string): Promise<number | null> {
    const decision = this.engine.nextWindow(id, this.watermarks.get(id) ?? null, Date.now(), this.horizon());
    if (!decision.due) return Math.max(100, decision.retryAt - Date.now());
    let error: string | null;
    try {
      error = (await this.engine.runWindow(id, decision.window, { signal: this.abort.signal })).error;
    } catch (e) {
      // The run could not even be recorded (storage down): the same window is tried again.
      error = errorMessage(e);
      this.log.warn({ detector: id, err: error }, 'detector window not recorded; will retry');
    }
    if (this.stopped) return null;
    if (error === null) {
      this.watermarks.set(id, decision.window.to);
      this.failures.delete(id);
      return 0;
    }
    const n = (this.failures.get(id) ?? 0) + 1;
    this.failures.set(id, n);
    return Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (n - 1));
  }
}
