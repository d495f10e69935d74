import { hostname } from 'node:os';
import type { Logger } from '../common/logger.js';
import type { Config } from '../config/index.js';
import { AllowlistStore } from '../findings/allowlist.js';
import { FindingStore } from '../findings/store.js';
import { redactUrl, type Store } from '../storage/clickhouse.js';
import { BullmqScheduler } from './bullmq-scheduler.js';
import type { DetectorDefinition } from './detector.js';
import { DetectionEngine } from './engine.js';
import { DETECTORS } from './registry.js';
import { RunLog } from './runs.js';
import { InProcessScheduler, type Scheduler, type StorageHorizon } from './scheduler.js';
import { applyStoredSettings, DetectorSettingsStore } from './settings.js';
import { ThreatIntel } from './threat-intel.js';

export type { BackfillResult, ConfiguredDetector, WindowResult } from './engine.js';
export { DetectionEngine } from './engine.js';
export { DETECTORS } from './registry.js';
export { RunLog } from './runs.js';
export type { Scheduler, StorageHorizon } from './scheduler.js';
export { DetectorSettingsStore } from './settings.js';

export interface Detection {
  readonly engine: DetectionEngine;
  readonly findings: FindingStore;
  readonly runs: RunLog;
  readonly threatIntel: ThreatIntel;
  /** Analyst allowlist rules, honoured by the engine at every run. */
  readonly allowlist: AllowlistStore;
  /** Detector settings changed through the API (applied by loadStoredSettings). */
  readonly settings: DetectorSettingsStore;
}

/** The detection engine over a store, configured (throws CONFIG_INVALID naming the field). */
export function createDetection(
  config: Readonly<Config>,
  store: Store,
  log: Logger,
  definitions: readonly DetectorDefinition[] = DETECTORS,
): Detection {
  const detectLog = log.child({ component: 'detect' });
  const threatIntel = new ThreatIntel(config.detection.threatIntel, detectLog);
  const findings = new FindingStore(store);
  const runs = new RunLog(store);
  const allowlist = new AllowlistStore(store);
  const settings = new DetectorSettingsStore(store);
  const engine = new DetectionEngine(
    { store, findings, runs, threatIntel, log: detectLog, suppressions: allowlist },
    definitions,
    {
      internalNetworks: config.detection.internalNetworks,
      allowlist: config.detection.allowlist,
      detectors: config.detection.detectors,
      queryTimeoutSeconds: config.detection.queryTimeoutSeconds,
      lagSeconds: config.detection.lagSeconds,
    },
  );
  return { engine, findings, runs, threatIntel, allowlist, settings };
}

/** Applies the detector settings changed through the API (kept in ClickHouse) over the configuration. */
export function loadStoredSettings(detection: Detection, log: Logger): Promise<number> {
  return applyStoredSettings(detection.engine, detection.settings, log.child({ component: 'detect' }));
}

/** In-process scheduling by default; BullMQ when REDIS_URL is set. */
export function createScheduler(
  config: Readonly<Config>,
  detection: Detection,
  horizon: StorageHorizon,
  log: Logger,
  store: Store,
): Scheduler {
  const schedulerLog = log.child({ component: 'scheduler' });
  if (config.scheduler.redisUrl) {
    return new BullmqScheduler(detection.engine, detection.runs, horizon, schedulerLog, {
      redisUrl: config.scheduler.redisUrl,
      concurrency: config.detection.concurrency,
      prefix: config.scheduler.prefix,
      store: store.embedded
        ? { embedded: true, identity: `embedded:${hostname()}:${store.path}` }
        : { embedded: false, identity: `${redactUrl(config.storage.clickhouse.url)}/${store.database}` },
    });
  }
  return new InProcessScheduler(
    detection.engine,
    detection.runs,
    horizon,
    schedulerLog,
    config.detection.concurrency,
  );
}
