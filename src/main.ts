import { mkdirSync, readFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { buildApp } from './api/app.js';
import { Collector } from './collector/collector.js';
import { errorMessage, FlowsentryError } from './common/errors.js';
import { parseHostPort } from './common/ip.js';
import type { Logger } from './common/logger.js';
import type { Config } from './config/index.js';
import { createMetrics } from './metrics.js';
import { openStore, type Store } from './storage/clickhouse.js';
import { FlowWriter } from './storage/flow-writer.js';
import { applyRetention, migrate } from './storage/migrate.js';
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
  stop(): Promise<void>;
}

/** Opens the store and applies migrations and retention (used by serve, migrate and import). */
export async function prepareStore(config: Readonly<Config>, log: Logger): Promise<Store> {
  mkdirSync(config.dataDir, { recursive: true });
  const store = await openStore(config.storage.clickhouse, config.dataDir);
  try {
    await migrate(store, log.child({ component: 'migrate' }));
    await applyRetention(store, config.storage.retention, log.child({ component: 'migrate' }));
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}

/**
 * The composition root of `flowsentry serve`, in dependency order (stop() runs in reverse):
 * spool recovery → collector process (sockets bound at normal priority) → this process lowers its
 * own priority (storage.nice; every thread it starts later, ClickHouse's included, inherits it) →
 * store and migrations → writer → API. Detector scheduling arrives with the detector issue.
 */
export async function startService(config: Readonly<Config>, log: Logger): Promise<Service> {
  mkdirSync(config.dataDir, { recursive: true });
  const storageLog = log.child({ component: 'storage' });
  const spool = new Spool(join(config.dataDir, 'spool'), config.storage.spool.maxBytes);
  // Files left by the previous run, listed before the collector writes new ones.
  const recovered = spool.recover();
  const waiting: SpoolFile[] = [...recovered.files];
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
  await collector.start();
  if (config.storage.nice > 0) {
    try {
      setPriority(config.storage.nice);
    } catch (error) {
      log.warn({ err: errorMessage(error) }, 'cannot lower the service process priority');
    }
  }

  let store: Store;
  try {
    store = await prepareStore(config, log);
  } catch (error) {
    await collector.stop();
    throw error;
  }
  writer = new FlowWriter(store, spool, storageLog, {
    maxBatchBytes: config.storage.batch.maxInsertRows * 160,
  });
  for (const file of waiting) writer.enqueue(file);
  if (recovered.files.length > 0 || recovered.discarded > 0) {
    storageLog.info(
      { files: recovered.files.length, incomplete: recovered.discarded },
      'inserting spool files left by the previous run',
    );
  }
  writer.start();
  const activeWriter = writer;

  let app: FastifyInstance | null = null;
  try {
    const metrics = createMetrics({
      snapshot: () => collector.snapshot(),
      writer: () => activeWriter.stats,
      spoolBytes: () => spool.bytes,
      collectorRestarts: () => collector.restarts,
    });
    activeWriter.onInsert = (_rows, seconds) => metrics.insertSeconds.observe(seconds);
    app = await buildApp({
      store,
      collector,
      metrics: metrics.registry,
      log,
      version: VERSION,
      storage: () => ({ writer: activeWriter.stats, spoolBytes: spool.bytes }),
    });
    const { host, port } = parseHostPort(config.api.listen)!;
    try {
      await app.listen({ host, port });
    } catch (error) {
      throw new FlowsentryError(
        'LISTEN_FAILED',
        `FLOWSENTRY_LISTEN_HTTP: cannot listen on ${config.api.listen}: ${errorMessage(error)}`,
      );
    }
  } catch (error) {
    await app?.close();
    await collector.stop();
    await activeWriter.stop(false);
    await store.close();
    throw error;
  }
  const address = app.server.address();
  const httpAddress =
    typeof address === 'object' && address
      ? `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
      : config.api.listen;
  log.info(
    { http: httpAddress, store: store.embedded ? store.path : 'server', version: VERSION },
    'flowsentry started',
  );

  let stopped: Promise<void> | null = null;
  return {
    httpAddress,
    collector,
    writer: activeWriter,
    stop() {
      stopped ??= (async () => {
        await app.close();
        await collector.stop();
        // Give the store a few seconds to take what is queued; the rest stays in the spool for next time.
        await Promise.race([activeWriter.drained(), new Promise((r) => setTimeout(r, 10_000).unref())]);
        await activeWriter.stop(false);
        await store.close();
        log.info({ queuedRows: activeWriter.stats.queuedRows }, 'flowsentry stopped');
      })();
      return stopped;
    },
  };
}
