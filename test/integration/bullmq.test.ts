import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { z } from 'zod';
import { BullmqScheduler } from '../../src/detect/bullmq-scheduler.js';
import { defineDetector } from '../../src/detect/detector.js';
import { queryRows } from '../../src/storage/clickhouse.js';
import { DetectionHarness, trafficBase } from '../support/detection.js';
import { TrafficBuilder } from '../support/packets.js';

/**
 * Detector scheduling on the real Redis at 127.0.0.1:6379 (REDIS_URL in tests: FLOWSENTRY_TEST_REDIS_URL):
 * two schedulers sharing one store and one Redis take turns, every window runs once, a failed window is
 * retried by BullMQ with backoff, and a process with another store is refused.
 */
const REDIS_URL = process.env.FLOWSENTRY_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const S = 1_000_000;

let failures = 0;
const counting = defineDetector({
  id: 'flows-per-source',
  title: 'Flows per source',
  description: 'test detector',
  techniques: ['T1046'],
  severity: 'low',
  intervalSeconds: 10,
  lookbackSeconds: 10,
  cooldownSeconds: 600,
  falsePositives: [],
  params: z.strictObject({}),
  async run(ctx) {
    if (failures > 0) {
      failures--;
      throw new Error('injected failure');
    }
    const rows = await ctx.query<{ src: string; n: number; first: string; last: string }>(
      `SELECT src_addr AS src, countIf(in_window = 1) AS n, min(flow_start) AS first, max(flow_end) AS last
       FROM {{flows}} GROUP BY src HAVING n > 0`,
    );
    return rows.map((r) => ({
      key: [r.src],
      title: `flows from ${r.src}`,
      confidence: 1,
      srcIp: r.src,
      dstIp: null,
      firstSeen: r.first,
      lastSeen: r.last,
      flows: r.n,
      bytes: 0,
      packets: 0,
      evidence: {},
    }));
  },
});

let h: DetectionHarness;
let redis: Redis;
const prefix = `flowsentry-test-${randomUUID().slice(0, 8)}`;
const base = trafficBase(3);

beforeAll(async () => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });
  await redis.connect();
  h = await DetectionHarness.open();
  // Received at the end of each minute, as a one-minute exporter timeout would deliver it.
  for (let m = 0; m < 3; m++) {
    const b = new TrafficBuilder();
    for (let i = 0; i < 30; i++)
      b.udpExchange(base + m * 60 * S + i * 2 * S, '10.4.0.1', '192.0.2.53', 20_000 + i, 53, 40, null);
    await h.load(b);
  }
}, 60_000);

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  await h?.close();
});

function scheduler(
  detection: ReturnType<DetectionHarness['detection']>,
  identity = `embedded:test:${h.dir.path}`,
) {
  return new BullmqScheduler(detection.engine, detection.runs, () => Date.now(), h.log, {
    redisUrl: REDIS_URL,
    concurrency: 1,
    prefix,
    store: { embedded: true, identity },
  });
}

describe('BullMQ scheduling on real Redis', () => {
  test('two schedulers on one store run every window once, in order, and retry a failed one', async () => {
    const a = h.detection({ lagSeconds: 0 }, [counting]);
    const b = h.detection({ lagSeconds: 0 }, [counting]);
    const watermark = Math.floor(base / 1000 / 10_000) * 10_000;
    await a.runs.record({
      runId: 'seed',
      detector: 'flows-per-source',
      mode: 'scheduled',
      windowFrom: watermark - 10_000,
      windowTo: watermark,
      startedAt: Date.now(),
      finishedAt: Date.now(),
      observations: 0,
      findingsCreated: 0,
      findingsUpdated: 0,
      error: null,
      worker: 'test',
    });
    failures = 1;
    const first = scheduler(a);
    const second = scheduler(b);
    await first.start();
    await second.start();
    try {
      const target = Math.floor((Date.now() - 10_000) / 10_000) * 10_000;
      for (let i = 0; i < 300 && ((await a.runs.watermark('flows-per-source')) ?? 0) < target; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await first.stop();
      await second.stop();
    }
    const runs = await queryRows<{ from: string; to: string; status: string; error: string; worker: string }>(
      h.store,
      `SELECT window_from AS from, window_to AS to, status, error, worker FROM detector_runs
       WHERE detector = 'flows-per-source' AND run_id != 'seed' ORDER BY finished_at`,
    );
    const ok = runs.filter((r) => r.status === 'ok');
    const failed = runs.filter((r) => r.status === 'error');
    // The injected failure was recorded and its window retried (BullMQ backoff), not skipped.
    expect(failed).toHaveLength(1);
    expect(failed[0]!.error).toBe('injected failure');
    expect(ok[0]!.from).toBe(failed[0]!.from);
    // Contiguous from the watermark, no window twice.
    expect(ok[0]!.from).toBe(new Date(watermark).toISOString());
    expect(new Set(ok.map((r) => r.from)).size).toBe(ok.length);
    const sorted = [...ok].sort((x, y) => x.from.localeCompare(y.from));
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]!.from).toBe(sorted[i - 1]!.to);
    expect(ok.length).toBeGreaterThanOrEqual(15);
    // Each of the 90 flows counted once in the finding.
    const [row] = await queryRows<{ flows: number }>(
      h.store,
      `SELECT sum(flows) AS flows FROM findings FINAL WHERE detector = 'flows-per-source'`,
    );
    expect(Number(row!.flows)).toBe(90);
    // The job schedulers exist in Redis, one per enabled detector.
    expect(await redis.keys(`${prefix}:flowsentry-detectors:repeat:*`)).not.toHaveLength(0);
  }, 90_000);

  test('a process with another store is refused on the same Redis', async () => {
    const a = h.detection({}, [counting]);
    const holder = scheduler(a);
    await holder.start();
    try {
      const other = scheduler(h.detection({}, [counting]), 'https://clickhouse.example:8443/flowsentry');
      await expect(other.start()).rejects.toThrow(
        /REDIS_URL: another flowsentry process .* must share one ClickHouse server/,
      );
      await other.stop();
    } finally {
      await holder.stop();
    }
  });
});
