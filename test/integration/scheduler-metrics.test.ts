import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { BullmqScheduler } from '../../src/detect/bullmq-scheduler.js';
import { verticalPortScan } from '../../src/detect/detectors/vertical-port-scan/detector.js';
import { registerDetectionMetrics } from '../../src/detect/metrics.js';
import { InProcessScheduler } from '../../src/detect/scheduler.js';
import { DetectionHarness } from '../support/detection.js';
import { waitFor } from '../support/service.js';

/**
 * flowsentry_scheduler_jobs, the detector queue's depth, from both schedulers: BullMQ on the real
 * Redis at 127.0.0.1:6379 (FLOWSENTRY_TEST_REDIS_URL) and the in-process one. One enabled detector on
 * an hourly interval: once its first job has run, one job waits for the next interval and nothing else
 * is queued.
 */
const REDIS_URL = process.env.FLOWSENTRY_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `flowsentry-test-${randomUUID().slice(0, 8)}`;
let h: DetectionHarness;
let redis: Redis;

beforeAll(async () => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });
  await redis.connect();
  h = await DetectionHarness.open();
}, 60_000);
afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  await h?.close();
});

async function jobs(registry: Registry): Promise<Record<string, number>> {
  const metric = await registry.getSingleMetric('flowsentry_scheduler_jobs')!.get();
  return Object.fromEntries(metric.values.map((v) => [`${v.labels.kind}/${v.labels.state}`, v.value]));
}

const hourly = { detectors: { 'vertical-port-scan': { intervalSeconds: 3600, lookbackSeconds: 3600 } } };

test('BullMQ: the queue shared on Redis, by state', async () => {
  const detection = h.detection(hourly, [verticalPortScan]);
  const scheduler = new BullmqScheduler(detection.engine, detection.runs, () => Date.now(), h.log, {
    redisUrl: REDIS_URL,
    concurrency: 1,
    prefix,
    store: { embedded: true, identity: `embedded:test:${h.dir.path}` },
  });
  const registry = new Registry();
  registerDetectionMetrics(registry, detection.engine, scheduler);
  await scheduler.start();
  try {
    const settled = await waitFor(
      async () => {
        const j = await jobs(registry);
        return j['bullmq/delayed'] === 1 && j['bullmq/active'] === 0 && j['bullmq/waiting'] === 0
          ? j
          : undefined;
      },
      30_000,
      'one delayed job and nothing else',
    );
    expect(settled).toEqual({
      'bullmq/waiting': 0,
      'bullmq/active': 0,
      'bullmq/delayed': 1,
      'bullmq/failed': 0,
    });
  } finally {
    await scheduler.stop();
  }
  // A stopped scheduler (its Redis connections closed): no samples rather than a failed scrape.
  expect(await jobs(registry)).toEqual({});
});

test('in-process: the detector planned on its timer once its first window has run', async () => {
  const detection = h.detection(hourly, [verticalPortScan]);
  const scheduler = new InProcessScheduler(detection.engine, detection.runs, () => Date.now(), h.log, 1);
  const registry = new Registry();
  registerDetectionMetrics(registry, detection.engine, scheduler);
  await scheduler.start();
  try {
    const settled = await waitFor(
      async () => {
        const j = await jobs(registry);
        return j['in-process/delayed'] === 1 && j['in-process/active'] === 0 ? j : undefined;
      },
      30_000,
      'the detector on its timer',
    );
    expect(settled).toEqual({
      'in-process/waiting': 0,
      'in-process/active': 0,
      'in-process/delayed': 1,
      'in-process/failed': 0,
    });
  } finally {
    await scheduler.stop();
  }
});
