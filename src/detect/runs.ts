import type { RunMode } from '../findings/model.js';
import { chTime } from '../findings/store.js';
import { insertRows, queryRows, type Store } from '../storage/clickhouse.js';

export interface RunRecord {
  readonly runId: string;
  readonly detector: string;
  readonly mode: RunMode;
  readonly windowFrom: number;
  readonly windowTo: number;
  readonly startedAt: number;
  readonly finishedAt: number;
  readonly observations: number;
  readonly findingsCreated: number;
  readonly findingsUpdated: number;
  readonly error: string | null;
  readonly worker: string;
}

/** The latest run of a detector, as GET /api/v1/detectors shows it. */
export interface LastRun {
  readonly run_id: string;
  readonly mode: RunMode;
  readonly window_from: string;
  readonly window_to: string;
  readonly finished_at: string;
  readonly duration_ms: number;
  readonly findings: number;
  readonly findings_created: number;
  readonly findings_updated: number;
  readonly error: string | null;
}

/**
 * The detector_runs table: a row per finished run, and from it each detector's watermark (the end of
 * its latest successful scheduled window) and last run.
 */
export class RunLog {
  constructor(private readonly store: Store) {}

  async record(run: RunRecord): Promise<void> {
    await insertRows(this.store, 'detector_runs', [
      {
        run_id: run.runId,
        detector: run.detector,
        run_mode: run.mode,
        window_from: chTime(run.windowFrom),
        window_to: chTime(run.windowTo),
        started_at: chTime(run.startedAt),
        finished_at: chTime(run.finishedAt),
        duration_ms: Math.max(0, Math.round(run.finishedAt - run.startedAt)),
        observations: run.observations,
        findings_created: run.findingsCreated,
        findings_updated: run.findingsUpdated,
        status: run.error === null ? 'ok' : 'error',
        error: run.error ?? '',
        worker: run.worker,
      },
    ]);
  }

  /** Epoch ms where the next scheduled window of each detector starts (absent: never ran). */
  async watermarks(): Promise<Map<string, number>> {
    const rows = await queryRows<{ detector: string; to: string }>(
      this.store,
      `SELECT detector, max(window_to) AS to FROM detector_runs
       WHERE run_mode = 'scheduled' AND status = 'ok' GROUP BY detector`,
    );
    return new Map(rows.map((r) => [r.detector, Date.parse(r.to)]));
  }

  async watermark(detector: string): Promise<number | null> {
    const [row] = await queryRows<{ to: string | null; n: number }>(
      this.store,
      `SELECT max(window_to) AS to, count() AS n FROM detector_runs
       WHERE detector = {detector:String} AND run_mode = 'scheduled' AND status = 'ok'`,
      { detector },
    );
    return row && Number(row.n) > 0 && row.to ? Date.parse(row.to) : null;
  }

  /** The latest finished run of every detector (scheduled or backfill). */
  async lastRuns(): Promise<Map<string, LastRun>> {
    const rows = await queryRows<{
      detector: string;
      run_id: string;
      run_mode: RunMode;
      window_from: string;
      window_to: string;
      finished_at: string;
      duration_ms: number;
      findings_created: number;
      findings_updated: number;
      status: 'ok' | 'error';
      error: string;
    }>(
      this.store,
      `SELECT detector, run_id, run_mode, window_from, window_to, finished_at, duration_ms,
              findings_created, findings_updated, status, error
       FROM detector_runs ORDER BY finished_at DESC LIMIT 1 BY detector`,
      {},
      // Served by GET /api/v1/detectors: read-only and bounded like every API query.
      { readonly: true, timeoutSeconds: 30 },
    );
    return new Map(
      rows.map((r) => [
        r.detector,
        {
          run_id: r.run_id,
          mode: r.run_mode,
          window_from: new Date(Date.parse(r.window_from)).toISOString(),
          window_to: new Date(Date.parse(r.window_to)).toISOString(),
          finished_at: new Date(Date.parse(r.finished_at)).toISOString(),
          duration_ms: Number(r.duration_ms),
          findings: Number(r.findings_created) + Number(r.findings_updated),
          findings_created: Number(r.findings_created),
          findings_updated: Number(r.findings_updated),
          error: r.status === 'ok' ? null : r.error,
        },
      ]),
    );
  }
}
