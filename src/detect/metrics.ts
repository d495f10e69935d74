import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { observedGauge } from '../common/metrics.js';
import type { DetectionEngine, WindowResult } from './engine.js';
import { JOB_STATES, type Scheduler } from './scheduler.js';

/**
 * The detectors' metrics, observed after every window the engine runs in this process (scheduled,
 * backfill or a BullMQ job this process took): runs by outcome, duration, findings opened and
 * updated, and how far each detector has got. With BullMQ, each process counts the windows it ran;
 * sum over instances.
 */
export function registerDetectionMetrics(
  registry: Registry,
  engine: DetectionEngine,
  scheduler?: Pick<Scheduler, 'kind' | 'jobs'>,
): void {
  if (scheduler) {
    // The scheduler's queue depth: in-process, this process's detectors; BullMQ, the shared queue
    // (the same value from every process: take max, not sum). Absent while Redis does not answer.
    observedGauge(
      registry,
      'flowsentry_scheduler_jobs',
      'Detector work by state (waiting, active, delayed, failed) and scheduler kind (in-process, bullmq).',
      ['state', 'kind'],
      async () => {
        const counts = await scheduler.jobs().catch(() => null);
        return counts
          ? JOB_STATES.map((state) => [{ state, kind: scheduler.kind }, counts[state]] as const)
          : [];
      },
    );
  }
  const runs = new Counter({
    name: 'flowsentry_detector_runs_total',
    help: 'Detector windows run, by detector and status (ok or error).',
    labelNames: ['detector', 'status'],
    registers: [registry],
  });
  const errors = new Counter({
    name: 'flowsentry_detector_errors_total',
    help: 'Detector windows that failed (query error, timeout); the window is retried.',
    labelNames: ['detector'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'flowsentry_detector_run_duration_seconds',
    help: 'Time per detector window (queries and finding updates).',
    labelNames: ['detector'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [registry],
  });
  const findings = new Counter({
    name: 'flowsentry_detector_findings_total',
    help: 'Findings a detector opened (created) or added to (updated).',
    labelNames: ['detector', 'outcome'],
    registers: [registry],
  });
  const observations = new Counter({
    name: 'flowsentry_detector_observations_total',
    help: 'Rows the detector queries returned (before suppression and allowlists).',
    labelNames: ['detector'],
    registers: [registry],
  });
  const windowEnd = new Gauge({
    name: 'flowsentry_detector_window_end_timestamp_seconds',
    help: 'End of the last window the detector completed without error (Unix seconds).',
    labelNames: ['detector'],
    registers: [registry],
  });
  // Every configured detector has its series from the start (0, not absent), so rate() and alerts
  // see a detector that never ran.
  for (const id of engine.detectors.keys()) {
    runs.inc({ detector: id, status: 'ok' }, 0);
    runs.inc({ detector: id, status: 'error' }, 0);
    errors.inc({ detector: id }, 0);
    findings.inc({ detector: id, outcome: 'created' }, 0);
    findings.inc({ detector: id, outcome: 'updated' }, 0);
    observations.inc({ detector: id }, 0);
  }
  const previous = engine.onWindow;
  engine.onWindow = (result: WindowResult) => {
    previous?.(result);
    const detector = result.detector;
    runs.inc({ detector, status: result.error === null ? 'ok' : 'error' });
    if (result.error !== null) errors.inc({ detector });
    else windowEnd.set({ detector }, result.window.to / 1000);
    duration.observe({ detector }, result.durationMs / 1000);
    findings.inc({ detector, outcome: 'created' }, result.created.length);
    findings.inc({ detector, outcome: 'updated' }, result.updated.length);
    observations.inc({ detector }, result.observations);
  };
}
