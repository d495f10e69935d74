import { randomUUID } from 'node:crypto';
import { type Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { errorMessage, FlowsentryError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { DetectionEngine } from './engine.js';
import type { RunLog } from './runs.js';
import { JOB_STATES, type JobCounts, type Scheduler, type StorageHorizon } from './scheduler.js';

export const DETECTOR_QUEUE = 'flowsentry-detectors';

/** Most windows one job runs before it hands the detector back (a backlog drains over several jobs). */
const WINDOWS_PER_JOB = 20;
/** How long a detector's lock lives without renewal; renewed every third of it while a job runs. */
const LOCK_MS = 120_000;
/** Horizons older than this are a process that stopped reporting (it is left out). */
const HORIZON_TTL_S = 30;

const RELEASE_LOCK = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW_LOCK = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/**
 * Detector scheduling on Redis with BullMQ, so that several flowsentry processes share the work. Each
 * enabled detector has a job scheduler (upsertJobScheduler, idempotent per id) that adds a job every
 * interval; any process's worker takes it. The job runs the detector's due windows from the
 * watermark in ClickHouse, under a per-detector lock in Redis, so that one window runs once across
 * all processes even when jobs overlap. A failed window fails the job, which BullMQ retries with
 * exponential backoff; the watermark only moves with successful windows.
 *
 * Every process publishes its storage horizon in Redis; a window waits for the oldest of them, so a
 * collector whose store lags holds every worker's windows back, not only its own.
 */
export class BullmqScheduler implements Scheduler {
  readonly name = 'scheduler';
  readonly kind = 'bullmq' as const;
  private queue: Queue | null = null;
  private worker: Worker | null = null;
  private redis: Redis | null = null;
  private horizonTimer: NodeJS.Timeout | null = null;
  private readonly id = randomUUID();
  private readonly abort = new AbortController();
  private readonly connections: Redis[] = [];

  constructor(
    private readonly engine: DetectionEngine,
    private readonly runs: RunLog,
    private readonly horizon: StorageHorizon,
    private readonly log: Logger,
    private readonly options: {
      readonly redisUrl: string;
      readonly concurrency: number;
      readonly prefix?: string;
      /** Which store this process writes findings to: every process on one Redis must share one. */
      readonly store: { readonly embedded: boolean; readonly identity: string };
    },
  ) {}

  private get prefix(): string {
    return this.options.prefix ?? 'flowsentry';
  }

  async start(): Promise<void> {
    const redis = new Redis(this.options.redisUrl, { maxRetriesPerRequest: null, lazyConnect: true });
    redis.on('error', (error: Error) => this.log.warn({ err: error.message }, 'redis'));
    this.redis = redis;
    try {
      await redis.connect();
      await redis.ping();
    } catch (error) {
      redis.disconnect();
      throw new FlowsentryError(
        'SCHEDULER_UNAVAILABLE',
        `REDIS_URL: cannot reach ${redactRedis(this.options.redisUrl)}: ${errorMessage(error)}`,
      );
    }
    await this.checkStores();
    await this.publishHorizon();
    this.horizonTimer = setInterval(() => {
      this.publishHorizon().catch((error: unknown) =>
        this.log.warn({ err: errorMessage(error) }, 'horizon not published'),
      );
    }, 5_000);
    this.horizonTimer.unref();

    const connection = redis.duplicate();
    const workerConnection = redis.duplicate();
    this.connections.push(connection, workerConnection);
    this.queue = new Queue(DETECTOR_QUEUE, { connection, prefix: this.prefix });
    await this.upsertSchedulers();
    this.worker = new Worker(DETECTOR_QUEUE, (job) => this.process(job), {
      connection: workerConnection,
      prefix: this.prefix,
      concurrency: this.options.concurrency,
      lockDuration: LOCK_MS,
    });
    this.worker.on('failed', (job, error) =>
      this.log.warn(
        { detector: job?.data?.detector, attempt: job?.attemptsMade, err: error.message },
        'detector job failed',
      ),
    );
    this.worker.on('error', (error) => this.log.warn({ err: error.message }, 'detector worker'));
    // A Redis that comes back may have lost its data (no persistence, a failover to an empty
    // replica) and with it the job schedulers: without them no detector job would run again. The
    // upserts are idempotent, so they are redone on every reconnection; windows resume from the
    // watermark in ClickHouse, none skipped.
    redis.on('ready', () => {
      this.log.info('redis reachable again: job schedulers upserted');
      this.publishHorizon()
        .then(() => this.upsertSchedulers())
        .catch((error: unknown) => this.log.warn({ err: errorMessage(error) }, 'schedulers not restored'));
    });
    this.log.info({ concurrency: this.options.concurrency }, 'detector scheduler started (bullmq)');
  }

  async jobs(): Promise<JobCounts> {
    const counts = this.queue ? await this.queue.getJobCounts(...JOB_STATES) : {};
    return Object.fromEntries(JOB_STATES.map((state) => [state, counts[state] ?? 0])) as JobCounts;
  }

  /**
   * One job scheduler per enabled detector; disabled ones are removed. Upserting from every process
   * at start is idempotent per id; a lock makes the processes take turns (concurrent upserts have
   * lost schedulers in some BullMQ releases).
   */
  private async upsertSchedulers(): Promise<void> {
    const token = await this.acquire('schedulers', 30_000, 30_000);
    try {
      for (const [id, d] of this.engine.detectors) {
        if (d.enabled) await this.upsert(id);
        else await this.queue!.removeJobScheduler(`detector:${id}`);
      }
    } finally {
      if (token) await this.release('schedulers', token);
    }
  }

  private async upsert(id: string): Promise<void> {
    const d = this.engine.detector(id);
    await this.queue!.upsertJobScheduler(
      `detector:${id}`,
      { every: d.intervalSeconds * 1000 },
      {
        name: 'detect',
        data: { detector: id },
        opts: {
          attempts: 8,
          backoff: { type: 'exponential', delay: 5_000 },
          removeOnComplete: { count: 500 },
          removeOnFail: { count: 2_000 },
        },
      },
    );
  }

  async refresh(id: string): Promise<void> {
    if (!this.queue) return;
    if (this.engine.detector(id).enabled) await this.upsert(id);
    else await this.queue.removeJobScheduler(`detector:${id}`);
  }

  /** The job: run what is due for the detector, under its lock. */
  async process(job: Job<{ detector: string }>): Promise<{ windows: number; skipped?: string }> {
    const id = job.data.detector;
    if (!this.engine.detectors.has(id)) return { windows: 0, skipped: 'unknown detector' };
    if (!this.engine.detector(id).enabled) return { windows: 0, skipped: 'disabled' };
    const token = await this.acquire(`detector:${id}`, LOCK_MS, 0);
    if (!token) return { windows: 0, skipped: 'running elsewhere' };
    const renew = setInterval(() => {
      this.redis
        ?.eval(RENEW_LOCK, 1, this.lockKey(`detector:${id}`), token, String(LOCK_MS))
        .catch((error: unknown) => this.log.warn({ err: errorMessage(error) }, 'lock renewal failed'));
    }, LOCK_MS / 3);
    let windows = 0;
    try {
      for (; windows < WINDOWS_PER_JOB; windows++) {
        const watermark = await this.runs.watermark(id);
        const decision = this.engine.nextWindow(id, watermark, Date.now(), await this.sharedHorizon());
        if (!decision.due) break;
        const result = await this.engine.runWindow(id, decision.window, { signal: this.abort.signal });
        if (result.error !== null) throw new Error(result.error);
      }
    } finally {
      clearInterval(renew);
      await this.release(`detector:${id}`, token);
    }
    return { windows };
  }

  private lockKey(name: string): string {
    return `${this.prefix}:lock:${name}`;
  }

  private async acquire(name: string, ttlMs: number, waitMs: number): Promise<string | null> {
    const token = randomUUID();
    const deadline = Date.now() + waitMs;
    for (;;) {
      const ok = await this.redis!.set(this.lockKey(name), token, 'PX', ttlMs, 'NX');
      if (ok === 'OK') return token;
      if (Date.now() >= deadline) return null;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private async release(name: string, token: string): Promise<void> {
    await this.redis?.eval(RELEASE_LOCK, 1, this.lockKey(name), token).catch(() => undefined);
  }

  private async publishHorizon(): Promise<void> {
    await this.redis?.set(`${this.prefix}:horizon:${this.id}`, String(this.horizon()), 'EX', HORIZON_TTL_S);
    await this.redis?.set(
      `${this.prefix}:store:${this.id}`,
      JSON.stringify({ ...this.options.store, worker: this.engine.worker }),
      'EX',
      HORIZON_TTL_S,
    );
  }

  /**
   * Processes that share a Redis share the detector windows, so they must share one store: with the
   * embedded engine only one process can take part (its ./data is its own), several need a ClickHouse
   * server (CLICKHOUSE_URL), the same for all.
   */
  private async checkStores(): Promise<void> {
    const redis = this.redis!;
    const others: Array<{ embedded: boolean; identity: string; worker: string }> = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${this.prefix}:store:*`, 'COUNT', 100);
      cursor = next;
      for (const key of keys) {
        if (key.endsWith(this.id)) continue;
        const v = await redis.get(key);
        if (!v) continue;
        try {
          others.push(JSON.parse(v) as { embedded: boolean; identity: string; worker: string });
        } catch {
          // Not ours: ignore.
        }
      }
    } while (cursor !== '0');
    const mine = this.options.store;
    // The same embedded store on the same host is a previous run of this process whose entry has not
    // expired yet (the engine itself lets one process at a time open a data directory).
    const conflict = others.find((o) => o.identity !== mine.identity);
    if (conflict) {
      throw new FlowsentryError(
        'CONFIG_INVALID',
        `REDIS_URL: another flowsentry process (${conflict.worker}, ${conflict.embedded ? 'embedded store' : 'ClickHouse server'}) ` +
          `already schedules detectors on this Redis (prefix "${this.prefix}"); processes that share a Redis must share one ` +
          'ClickHouse server (set the same CLICKHOUSE_URL on each), since the embedded store belongs to a single process',
      );
    }
  }

  /** The oldest storage horizon any live flowsentry process reports (this one's included). */
  private async sharedHorizon(): Promise<number> {
    let oldest = this.horizon();
    const redis = this.redis;
    if (!redis) return oldest;
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${this.prefix}:horizon:*`, 'COUNT', 100);
      cursor = next;
      if (keys.length > 0) {
        for (const v of await redis.mget(...keys)) {
          const n = Number(v);
          if (v !== null && Number.isFinite(n)) oldest = Math.min(oldest, n);
        }
      }
    } while (cursor !== '0');
    return oldest;
  }

  async stop(): Promise<void> {
    if (this.horizonTimer) clearInterval(this.horizonTimer);
    // Worker.close() waits for the jobs under way (each finishes its current window).
    const closing = this.worker?.close();
    const timer = setTimeout(() => this.abort.abort(), 15_000);
    await closing;
    clearTimeout(timer);
    await this.queue?.close();
    await this.redis
      ?.del(`${this.prefix}:horizon:${this.id}`, `${this.prefix}:store:${this.id}`)
      .catch(() => undefined);
    for (const c of this.connections) c.disconnect();
    this.redis?.disconnect();
  }
}

export function redactRedis(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
