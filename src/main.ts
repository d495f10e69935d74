import { mkdirSync, readFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildApp } from './api/app.js';
import { warnAboutExposure } from './api/auth.js';
import { redisPinger, urlPassword } from './api/system.js';
import { Collector } from './collector/collector.js';
import { registerCollectorMetrics } from './collector/metrics.js';
import { Lifecycle } from './common/component.js';
import { errorMessage, FlowsentryError } from './common/errors.js';
import { parseHostPort } from './common/ip.js';
import type { Logger } from './common/logger.js';
import { createMetricsRegistry } from './common/metrics.js';
import { lowerAllThreads, type ProcessNice } from './common/thread-priority.js';
import type { Config } from './config/index.js';
import {
  createDetection,
  createScheduler,
  type Detection,
  loadStoredSettings,
  type Scheduler,
} from './detect/index.js';
import { registerDetectionMetrics } from './detect/metrics.js';
import { createSiemForwarder, type SiemForwarder } from './siem/index.js';
import { registerSiemMetrics } from './siem/metrics.js';
import { openStore, type Store } from './storage/clickhouse.js';
import type { ClusterOptions } from './storage/cluster.js';
import { FlowWriter } from './storage/flow-writer.js';
import { registerStorageMetrics } from './storage/metrics.js';
import { applyRetention, MIGRATIONS_DIR, migrate } from './storage/migrate.js';
import { Spool, type SpoolFile } from './storage/spool.js';

export const VERSION: string = (
  JSON.parse(
    readFileSync(resolve(dirname(fileURLToPath(import.meta.url)), '..', 'package.json'), 'utf8'),
  ) as {
    version: string;
  }
).version;

export interface Service {
  readonly httpAddress: string;
  readonly collector: Collector;
  readonly writer: FlowWriter;
  readonly detection: Detection;
  readonly scheduler: Scheduler;
  readonly siem: SiemForwarder;
  stop(): Promise<void>;
}

/** The cluster the migrations target (storage.cluster.name), or null for one server. */
export function clusterOptions(config: Readonly<Config>): ClusterOptions | null {
  const { name, sharding } = config.storage.cluster;
  return name ? { cluster: name, database: config.storage.clickhouse.database, sharding } : null;
}

/** Opens the store and applies migrations and retention (used by serve, migrate, import and detect). */
export async function prepareStore(config: Readonly<Config>, log: Logger): Promise<Store> {
  mkdirSync(config.dataDir, { recursive: true });
  const cluster = clusterOptions(config);
  const store = await openStore(config.storage.clickhouse, config.dataDir, cluster?.cluster);
  try {
    await migrate(store, log.child({ component: 'migrate' }), MIGRATIONS_DIR, cluster);
    await applyRetention(store, config.storage.retention, log.child({ component: 'migrate' }), cluster);
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}

/**
 * The composition root of `flowsentry serve`. Components start in dependency order and stop in
 * reverse (src/common/component.ts):
 *
 *   collector process (sockets bound at normal priority) → this process lowers its own priority
 *   (storage.nice, every thread, re-checked every 2 s for ClickHouse's new ones) → store and
 *   migrations → flow writer → detector scheduler → SIEM forwarder → API.
 *
 * Stopping: the API stops answering, the SIEM forwarder finishes the message under way, closes its
 * connections and saves its position, the scheduler lets the windows under way finish, the collector
 * drains its queue into the spool and the writer inserts what it can within 10 s (the rest waits in
 * the spool for the next start), then the store closes.
 */
export async function startService(config: Readonly<Config>, log: Logger): Promise<Service> {
  mkdirSync(config.dataDir, { recursive: true });
  const lifecycle = new Lifecycle(log);
  const storageLog = log.child({ component: 'storage' });
  const spool = new Spool(join(config.dataDir, 'spool'), config.storage.spool.maxBytes);
  // Files left by the previous run, listed before the collector writes new ones.
  const recovered = spool.recover();
  const waiting: SpoolFile[] = [];
  let writer: FlowWriter | null = null;
  const collector = new Collector(
    config,
    log.child({ component: 'collector' }),
    (file) => {
      spool.adopt(file);
      if (writer) writer.enqueue(file);
      else waiting.push(file);
    },
    () => Atomics.load(spool.sizeKiB, 0),
  );
  spool.onRelease = (kib) => collector.released(kib);
  await lifecycle.start({ name: 'collector', start: () => collector.start(), stop: () => collector.stop() });
  // The service process (store, writer, detectors, API) runs below the collector: every one of its
  // threads, ClickHouse's included, re-checked every 2 s for threads created since.
  const servicePriority: ProcessNice = { threads: 0, lowered: 0, minNice: 0 };
  if (config.storage.nice > 0) {
    let timer: NodeJS.Timeout | null = null;
    await lifecycle.start({
      name: 'priority',
      start: async () => {
        try {
          setPriority(config.storage.nice);
        } catch (error) {
          log.warn({ err: errorMessage(error) }, 'cannot lower the service process priority');
        }
        lowerAllThreads(config.storage.nice, servicePriority);
        timer = setInterval(() => lowerAllThreads(config.storage.nice, servicePriority), 2_000);
        timer.unref();
      },
      stop: async () => {
        if (timer) clearInterval(timer);
      },
    });
  }

  const store = await lifecycle.open(
    'store',
    () => prepareStore(config, log),
    (store) => store.close(),
  );

  const activeWriter = new FlowWriter(store, spool, storageLog, {
    maxBatchBytes: config.storage.batch.maxInsertRows * 160,
  });
  writer = activeWriter;
  // Batches recorded before the previous run stopped go first, as they were (src/storage/spool.ts).
  activeWriter.enqueueRecovered(recovered);
  for (const file of waiting) activeWriter.enqueue(file);
  if (recovered.files.length > 0 || recovered.batches.length > 0 || recovered.discarded > 0) {
    storageLog.info(
      {
        files: recovered.files.length,
        batches: recovered.batches.length,
        completed: recovered.completed,
        incomplete: recovered.discarded,
      },
      'inserting spool files left by the previous run',
    );
  }
  await lifecycle.start({
    name: 'writer',
    start: async () => activeWriter.start(),
    stop: async () => {
      // The collector stops first, so that its last chunks reach the spool and this writer.
      await collector.stop();
      // Give the store a few seconds to take what is queued; the rest stays in the spool for next time.
      await Promise.race([activeWriter.drained(), new Promise((r) => setTimeout(r, 10_000).unref())]);
      await activeWriter.stop(false);
    },
  });

  let detection: Detection;
  try {
    detection = createDetection(config, store, log);
  } catch (error) {
    await lifecycle.stop();
    throw error;
  }
  // Detector settings changed through the API, over the configuration file, before anything runs.
  try {
    await loadStoredSettings(detection, log);
  } catch (error) {
    await lifecycle.stop();
    throw error;
  }
  const scheduler = createScheduler(config, detection, () => activeWriter.horizon(), log, store);
  await lifecycle.start(scheduler);

  let siem: SiemForwarder;
  try {
    siem = createSiemForwarder(config, {
      store,
      log,
      version: VERSION,
      detectors: new Map(
        [...detection.engine.detectors].map(([id, d]) => [id, { title: d.definition.title }]),
      ),
    });
  } catch (error) {
    await lifecycle.stop();
    throw error;
  }
  await lifecycle.start(siem);

  // Each component registers its own metrics (the API's are registered by buildApp).
  const metrics = createMetricsRegistry();
  registerCollectorMetrics(metrics, {
    snapshot: () => collector.snapshot(),
    restarts: () => collector.restarts,
  });
  registerStorageMetrics(metrics, activeWriter, spool);
  registerDetectionMetrics(metrics, detection.engine, scheduler);
  registerSiemMetrics(metrics, () => siem.status());
  const app = await lifecycle.open(
    'api',
    async () => {
      const built = await buildApp({
        store: store,
        collector,
        metrics,
        log,
        version: VERSION,
        storage: () => ({ writer: activeWriter.stats, spoolBytes: spool.bytes }),
        detection,
        siem,
        scheduler,
        api: config.api,
        redis: config.scheduler.redisUrl ? redisPinger(config.scheduler.redisUrl) : undefined,
        secrets: [config.storage.clickhouse.password, urlPassword(config.scheduler.redisUrl)],
      });
      const { host, port } = parseHostPort(config.api.listen)!;
      try {
        await built.listen({ host, port });
      } catch (error) {
        await built.close();
        throw new FlowsentryError(
          'LISTEN_FAILED',
          `FLOWSENTRY_LISTEN_HTTP: cannot listen on ${config.api.listen}: ${errorMessage(error)}`,
        );
      }
      warnAboutExposure(config.api, log.child({ component: 'api' }));
      return built;
    },
    (built) => built.close(),
  );
  const server = app.server;
  const address = server.address();
  const httpAddress =
    typeof address === 'object' && address
      ? `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
      : config.api.listen;
  log.info(
    {
      http: httpAddress,
      store: store.embedded ? store.path : 'server',
      scheduler: scheduler.kind,
      siem: siem.destinations.map((d) => d.name),
      version: VERSION,
    },
    'flowsentry started',
  );

  let stopped: Promise<void> | null = null;
  return {
    httpAddress,
    collector,
    writer: activeWriter,
    detection,
    scheduler,
    siem,
    stop() {
      stopped ??= (async () => {
        await lifecycle.stop();
        log.info({ queuedRows: activeWriter.stats.queuedRows }, 'flowsentry stopped');
      })();
      return stopped;
    },
  };
}
