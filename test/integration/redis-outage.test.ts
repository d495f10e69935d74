import { type ChildProcess, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { z } from 'zod';
import { BullmqScheduler } from '../../src/detect/bullmq-scheduler.js';
import { defineDetector } from '../../src/detect/detector.js';
import { queryRows } from '../../src/storage/clickhouse.js';
import { DetectionHarness } from '../support/detection.js';
import { freeTcpPort, sleep } from '../support/service.js';
import { tempDir } from '../support/temp.js';

/**
 * Redis down in BullMQ mode, on a private redis-server (its own port and directory): killed for
 * longer than two detector intervals, then started again, once with its data (AOF) and once empty
 * (no persistence, or a Redis that lost its data). Detector runs must resume and every window from
 * the watermark run exactly once: none skipped, none twice.
 */
const scratch = tempDir();
let h: DetectionHarness;
let redis: ChildProcess | null = null;
let port = 0;

const ticking = (id: string) =>
  defineDetector({
    id,
    title: 'Tick',
    description: 'test detector: one query per window',
    techniques: ['T1046'],
    severity: 'low',
    intervalSeconds: 5,
    lookbackSeconds: 5,
    cooldownSeconds: 600,
    falsePositives: [],
    params: z.strictObject({}),
    async run(ctx) {
      await ctx.query('SELECT count() AS n FROM {{flows}}');
      return [];
    },
  });

async function startRedis(persist: boolean): Promise<void> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', scratch.path, '--save', ''];
  args.push(...(persist ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']));
  const child = spawn('redis-server', args, { stdio: 'ignore' });
  redis = child;
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const probe = spawn('redis-cli', ['-p', String(port), 'ping'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      probe.stdout.on('data', (b: Buffer) => {
        out += b.toString();
      });
      probe.on('exit', () => resolve(out.trim() === 'PONG'));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error('redis-server did not start');
}

function killRedis(): Promise<void> {
  const child = redis;
  redis = null;
  if (!child || child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

beforeAll(async () => {
  port = await freeTcpPort();
  h = await DetectionHarness.open();
}, 60_000);

afterAll(async () => {
  await killRedis();
  await h?.close();
  scratch.remove();
});

describe('Redis down in BullMQ mode', () => {
  test.each([
    { persist: true, name: 'restarted with its data' },
    { persist: false, name: 'restarted empty' },
  ])(
    'detector runs resume when Redis returns ($name); no window skipped or run twice',
    async ({ persist }) => {
      await startRedis(persist);
      // One detector per case, so the watermarks of the two cases do not mix.
      const id = `tick-${persist ? 'aof' : 'empty'}`;
      const detection = h.detection({ lagSeconds: 0 }, [ticking(id)]);
      const runs = detection.runs;
      // Windows of this case only: a watermark seeded a minute back, per case.
      const startedAt = Date.now();
      const watermark = Math.floor((startedAt - 30_000) / 5_000) * 5_000;
      const scheduler = new BullmqScheduler(detection.engine, runs, () => Date.now(), h.log, {
        redisUrl: `redis://127.0.0.1:${port}`,
        concurrency: 1,
        prefix: id,
        store: { embedded: true, identity: `embedded:test:${h.dir.path}` },
      });
      await runs.record({
        runId: `seed-${id}`,
        detector: id,
        mode: 'scheduled',
        windowFrom: watermark - 5_000,
        windowTo: watermark,
        startedAt,
        finishedAt: startedAt,
        observations: 0,
        findingsCreated: 0,
        findingsUpdated: 0,
        error: null,
        worker: 'test',
      });
      const caughtUp = async (target: number, timeoutMs: number) => {
        const deadline = Date.now() + timeoutMs;
        while (((await runs.watermark(id)) ?? 0) < target && Date.now() < deadline) await sleep(200);
        return (await runs.watermark(id)) ?? 0;
      };
      await scheduler.start();
      try {
        const before = Math.floor((Date.now() - 5_000) / 5_000) * 5_000;
        expect(await caughtUp(before, 30_000)).toBeGreaterThanOrEqual(before);

        await killRedis();
        const downAt = Date.now();
        await sleep(12_000);
        await startRedis(persist);
        const backAt = Date.now();
        const target = Math.floor((Date.now() - 5_000) / 5_000) * 5_000;
        const reached = await caughtUp(target, 45_000);
        const recoveredMs = Date.now() - backAt;
        console.log(
          `redis ${persist ? 'AOF' : 'empty'}: down ${((backAt - downAt) / 1000).toFixed(1)} s; watermark back to ` +
            `now - 5 s ${reached >= target ? `${(recoveredMs / 1000).toFixed(1)} s after Redis returned` : 'NEVER'}`,
        );
        expect(reached).toBeGreaterThanOrEqual(target);
      } finally {
        await scheduler.stop();
        await killRedis();
      }
      const windows = await queryRows<{ from: number; to: number; status: string }>(
        h.store,
        `SELECT toUnixTimestamp64Milli(window_from) AS from, toUnixTimestamp64Milli(window_to) AS to, status
       FROM detector_runs WHERE detector = {id:String} AND run_id != {seed:String} AND window_from >= fromUnixTimestamp64Milli({w:Int64})
       ORDER BY window_from`,
        { id, seed: `seed-${id}`, w: watermark },
      );
      const ok = windows.filter((w) => w.status === 'ok');
      expect(ok[0]!.from).toBe(watermark);
      expect(new Set(ok.map((w) => w.from)).size).toBe(ok.length);
      for (let i = 1; i < ok.length; i++) expect(ok[i]!.from).toBe(ok[i - 1]!.to);
      expect(ok.length).toBeGreaterThanOrEqual(8);
    },
    150_000,
  );
});
