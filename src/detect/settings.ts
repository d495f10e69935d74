import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { chTime } from '../findings/store.js';
import { insertRows, queryRows, type Store } from '../storage/clickhouse.js';
import type { DetectionEngine, DetectorSettingsInput } from './engine.js';

/** Detector settings changed through the API, in the API's field names (what detector_settings holds). */
export interface StoredDetectorSettings {
  readonly enabled?: boolean;
  readonly interval_seconds?: number;
  readonly lookback_seconds?: number;
  readonly cooldown_seconds?: number;
  readonly params?: Readonly<Record<string, unknown>>;
}

export interface StoredEntry {
  readonly settings: StoredDetectorSettings;
  readonly updatedBy: string;
  readonly updatedAt: string;
}

export function toEngineInput(s: StoredDetectorSettings): DetectorSettingsInput {
  return {
    enabled: s.enabled,
    intervalSeconds: s.interval_seconds,
    lookbackSeconds: s.lookback_seconds,
    cooldownSeconds: s.cooldown_seconds,
    params: s.params ? { ...s.params } : undefined,
  };
}

/** Folds a change into the settings stored so far (parameters merge key by key). */
export function mergeSettings(
  previous: StoredDetectorSettings,
  change: StoredDetectorSettings,
): StoredDetectorSettings {
  const params = previous.params || change.params ? { ...previous.params, ...change.params } : undefined;
  return {
    ...previous,
    ...change,
    ...(params ? { params } : {}),
  };
}

/**
 * The detector_settings table (migration 0006): settings changed through PATCH /api/v1/detectors/{id},
 * applied over the configuration file at every start, so that they survive restarts. Only the fields
 * changed through the API are kept, so the file still governs everything else.
 */
export class DetectorSettingsStore {
  private lastVersion = 0;

  constructor(private readonly store: Store) {}

  async load(): Promise<Map<string, StoredEntry>> {
    const rows = await queryRows<{
      detector: string;
      settings: string;
      updated_by: string;
      updated_at: string;
    }>(this.store, 'SELECT detector, settings, updated_by, updated_at FROM detector_settings FINAL');
    const out = new Map<string, StoredEntry>();
    for (const r of rows) {
      let settings: StoredDetectorSettings = {};
      try {
        settings = JSON.parse(r.settings) as StoredDetectorSettings;
      } catch {
        // An unreadable row is ignored (the configuration file applies).
      }
      out.set(r.detector, { settings, updatedBy: r.updated_by, updatedAt: r.updated_at });
    }
    return out;
  }

  async get(detector: string): Promise<StoredDetectorSettings> {
    const [row] = await queryRows<{ settings: string }>(
      this.store,
      'SELECT settings FROM detector_settings FINAL WHERE detector = {detector:String}',
      { detector },
      { readonly: true, timeoutSeconds: 30 },
    );
    try {
      return row ? (JSON.parse(row.settings) as StoredDetectorSettings) : {};
    } catch {
      return {};
    }
  }

  async save(detector: string, settings: StoredDetectorSettings, actor: string): Promise<void> {
    this.lastVersion = Math.max(Date.now(), this.lastVersion + 1);
    await insertRows(this.store, 'detector_settings', [
      {
        detector,
        version: this.lastVersion,
        settings: JSON.stringify(settings),
        updated_by: actor,
        updated_at: chTime(Date.now()),
      },
    ]);
  }
}

/**
 * Applies the stored settings to the engine (at start, before the scheduler starts). Settings that
 * no longer validate (a detector's parameters changed in an upgrade) or name a detector that is gone
 * are skipped with a warning: the configuration file applies to that detector.
 */
export async function applyStoredSettings(
  engine: DetectionEngine,
  settings: DetectorSettingsStore,
  log: Logger,
): Promise<number> {
  let applied = 0;
  for (const [id, entry] of await settings.load()) {
    if (!engine.detectors.has(id)) {
      log.warn({ detector: id }, 'stored settings of an unknown detector ignored');
      continue;
    }
    try {
      engine.reconfigure(id, toEngineInput(entry.settings), `detector_settings.${id}`);
      applied++;
    } catch (error) {
      log.warn({ detector: id, err: errorMessage(error) }, 'stored detector settings ignored');
    }
  }
  return applied;
}
