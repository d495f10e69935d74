import { z } from 'zod';
import { isValidCidr, parseHostPort } from '../common/ip.js';
import { siemSchema } from '../siem/config.js';
import { SHARDING } from '../storage/cluster.js';

const MiB = 1024 * 1024;

const hostPort = z.string().refine((s) => parseHostPort(s) !== null, {
  message: 'expected host:port or [ipv6]:port with a port 0-65535',
});

const cidr = z
  .string()
  .refine(isValidCidr, { message: 'expected a CIDR such as 10.0.0.0/8 or 2001:db8::/32' });

const positiveInt = (min: number, max: number) => z.number().int().min(min).max(max);

const collector = z
  .strictObject({
    /** UDP listeners; each accepts NetFlow v5, v9 and IPFIX (told apart by the version field). */
    listen: z.array(hostPort).min(1).default(['0.0.0.0:2055', '0.0.0.0:4739']),
    /** SO_RCVBUF requested per socket; the kernel caps it at net.core.rmem_max. */
    receiveBufferBytes: positiveInt(65_536, 2 ** 30).default(32 * MiB),
    /** Memory between the receive thread and the decoder: packets wait here, never in the socket. Resident from start. */
    queueBytes: positiveInt(MiB, 2 ** 30).default(64 * MiB),
    /** When non-empty, packets from other sources are counted and dropped. */
    allowedExporters: z.array(cidr).default([]),
    /**
     * Nice value of the decoder thread (Linux): the receive thread keeps priority under CPU
     * contention and the decoders catch up from the queue. 0 = same priority.
     */
    decoderNice: z.number().int().min(0).max(19).default(10),
    /**
     * Nice value of the receive thread (Linux). Negative raises it above other work on the box (a
     * ClickHouse server, detectors, anything at nice 0), which needs root, CAP_SYS_NICE or RLIMIT_NICE
     * (systemd: LimitNICE=); without them the thread stays at 0, start-up logs a warning and
     * /api/v1/collector reports it. 0 (default) = leave it; bench/RESULTS.md measures both.
     */
    receiveNice: z.number().int().min(-20).max(0).default(0),
  })
  .prefault({});

const sampling = z
  .strictObject({
    /** Rate for exporters that report none (1 = unsampled). */
    defaultRate: positiveInt(1, 2 ** 31).default(1),
    exporters: z
      .array(
        z.strictObject({
          prefix: cidr,
          rate: positiveInt(1, 2 ** 31),
          /** Use `rate` even when the exporter reports its own. */
          force: z.boolean().default(false),
        }),
      )
      .default([]),
  })
  .prefault({});

const decoder = z
  .strictObject({
    /** Generate a decoder per template layout; false uses the interpreter (for platforms without eval). */
    compile: z.boolean().default(true),
    templateTimeoutSeconds: positiveInt(60, 30 * 86_400).default(3_600),
    pendingTimeoutSeconds: positiveInt(1, 3_600).default(30),
    pendingMaxBytes: positiveInt(0, 2 ** 30).default(8 * MiB),
    maxExporters: positiveInt(1, 1_000_000).default(10_000),
    maxTemplatesPerStream: positiveInt(1, 65_536).default(1_024),
    maxTemplates: positiveInt(1, 10_000_000).default(100_000),
    /** Most data records taken from one v9/IPFIX datagram; the rest is dropped and counted. */
    maxRecordsPerPacket: positiveInt(30, 65_535).default(4_096),
    sampling,
  })
  .prefault({});

const storage = z
  .strictObject({
    clickhouse: z
      .strictObject({
        /** http(s)://host:8123 of a ClickHouse server; empty = embedded chDB under dataDir. */
        url: z
          .string()
          .refine((s) => s === '' || /^https?:\/\/[^/]+/.test(s), { message: 'expected http(s)://host:port' })
          .default(''),
        user: z.string().default('default'),
        password: z.string().default(''),
        database: z
          .string()
          .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected a database name (letters, digits, _)')
          .default('flowsentry'),
      })
      .prefault({}),
    batch: z
      .strictObject({
        /** Rows per spool chunk (160 bytes each). */
        maxRows: positiveInt(1_000, 1_000_000).default(100_000),
        /** A chunk is written at least this often while flows arrive. */
        maxDelayMs: positiveInt(50, 10_000).default(1_000),
        /** Most rows per INSERT (several chunks are inserted together when the store lags). */
        maxInsertRows: positiveInt(1_000, 10_000_000).default(400_000),
      })
      .prefault({}),
    spool: z
      .strictObject({
        /** Disk the spool may use while the store is slow or down; beyond it records are dropped (counted). */
        maxBytes: positiveInt(16 * MiB, 2 ** 50).default(2048 * MiB),
      })
      .prefault({}),
    /**
     * Nice value of the service process that runs the store (embedded ClickHouse), the writer and the
     * API (Linux), every thread of it (ClickHouse's pools included). The collector runs in its own
     * process at normal priority; the default 19 keeps the store below the decoder threads (10), so
     * that under a steady load a busy store makes the spool grow, not the packet queue. 0 = same priority.
     */
    nice: z.number().int().min(0).max(19).default(19),
    retention: z
      .strictObject({
        flowsDays: positiveInt(1, 36_500).default(30),
        rollup1mDays: positiveInt(1, 36_500).default(90),
        rollup1hDays: positiveInt(1, 36_500).default(365),
      })
      .prefault({}),
    /**
     * A ClickHouse cluster (docs/cluster/): the migrations run ON CLUSTER, with Replicated*MergeTree
     * tables <name>_local on every shard and Distributed tables under the usual names. Empty: one server.
     */
    cluster: z
      .strictObject({
        /** The cluster's name in the servers' remote_servers. */
        name: z
          .string()
          .regex(/^([A-Za-z_][A-Za-z0-9_]*)?$/, 'expected a cluster name (letters, digits, _)')
          .default(''),
        /** How flows are spread: `exporter` keeps an exporter's flows on one shard; `host-pair` hashes src and dst. */
        sharding: z.enum(SHARDING).default('exporter'),
      })
      .prefault({}),
  })
  .superRefine((s, ctx) => {
    if (s.cluster.name && !s.clickhouse.url) {
      ctx.addIssue({
        code: 'custom',
        path: ['cluster', 'name'],
        message: 'a cluster needs ClickHouse servers: set storage.clickhouse.url (CLICKHOUSE_URL) too',
      });
    }
  })
  .prefault({});

/** Scopes of API tokens: read-only tokens may only read (GET); read-write tokens may also change things. */
export const TOKEN_SCOPES = ['read-only', 'read-write'] as const;

const apiToken = z.strictObject({
  /** Who acts with it: recorded as the acting user of finding and detector changes. */
  name: z.string().regex(/^[A-Za-z0-9_.@-]{1,64}$/, 'letters, digits, _ . @ - (at most 64)'),
  token: z.string().min(1),
  scope: z.enum(TOKEN_SCOPES).default('read-only'),
});

const api = z
  .strictObject({
    listen: hostPort.default('127.0.0.1:8080'),
    /**
     * Bearer token for everything but /healthz (read-write, acting as "api-token"). With no token here
     * nor in `tokens`, the API is open.
     */
    token: z.string().default(''),
    /**
     * The API's address as others reach it (behind a proxy, a DNS name): SIEM messages link to
     * `<publicUrl>/api/v1/findings/<id>`. Default http://<listen>.
     */
    publicUrl: z
      .string()
      .max(200)
      .refine((s) => s === '' || /^https?:\/\/[^/\s]+(\/[^\s]*)?$/.test(s), {
        message: 'expected http(s)://host[:port][/path]',
      })
      .default(''),
    /** Further named tokens, each read-only or read-write. */
    tokens: z
      .array(apiToken)
      .default([])
      .superRefine((tokens, ctx) => {
        const names = new Set<string>();
        const values = new Set<string>();
        for (const [i, t] of tokens.entries()) {
          if (names.has(t.name))
            ctx.addIssue({ code: 'custom', path: [i, 'name'], message: 'duplicate name' });
          if (values.has(t.token))
            ctx.addIssue({ code: 'custom', path: [i, 'token'], message: 'the same token twice' });
          names.add(t.name);
          values.add(t.token);
        }
      }),
    /** /metrics needs a token too (when tokens are configured); default: public, for Prometheus. */
    metricsAuth: z.boolean().default(false),
    /** /docs and /openapi.json need a token too (when tokens are configured). */
    docsAuth: z.boolean().default(true),
    /** Requests per client in each window: per token for valid tokens, per address otherwise. */
    rateLimit: z
      .strictObject({
        max: positiveInt(1, 1_000_000).default(600),
        windowSeconds: positiveInt(1, 3_600).default(60),
      })
      .prefault({}),
    /** Largest request body (PATCH, POST); larger ones get 413. */
    bodyLimitBytes: positiveInt(1_024, 16 * MiB).default(64 * 1024),
    /** Longest request line (path and query); longer ones get 414. */
    maxUrlBytes: positiveInt(256, 65_536).default(8_192),
    /** An API query running longer than this is stopped (503 query_timeout). */
    queryTimeoutSeconds: positiveInt(1, 3_600).default(30),
    /** Longest time range of a flow query (raw flows; the rollup-backed timeseries allows a year). */
    maxRangeDays: positiveInt(1, 366).default(31),
  })
  .superRefine((a, ctx) => {
    if (a.token && a.tokens.some((t) => t.token === a.token)) {
      ctx.addIssue({ code: 'custom', path: ['tokens'], message: 'a token equal to api.token' });
    }
    if (a.token && a.tokens.some((t) => t.name === 'api-token')) {
      ctx.addIssue({ code: 'custom', path: ['tokens'], message: 'the name api-token is that of api.token' });
    }
  })
  .prefault({})
  .transform((a) => ({ ...a, publicUrl: (a.publicUrl || `http://${a.listen}`).replace(/\/+$/, '') }));

const scheduler = z
  .strictObject({
    /** redis:// URL: detector scheduling moves to BullMQ, shared by every process on that Redis. */
    redisUrl: z
      .string()
      .refine((s) => s === '' || /^rediss?:\/\/./.test(s), {
        message: 'expected redis://host:port or rediss://',
      })
      .default(''),
    /** Key prefix in Redis (one per flowsentry deployment sharing a Redis). */
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . -')
      .default('flowsentry'),
  })
  .prefault({});

const allowlist = z
  .strictObject({
    /** Findings whose source is in these CIDRs are dropped (a vulnerability scanner, a monitoring probe). */
    src: z.array(cidr).default([]),
    /** Findings whose destination is in these CIDRs are dropped (a backup target, a sanctioned resolver). */
    dst: z.array(cidr).default([]),
  })
  .prefault({});

/** Per-detector overrides; the detector's own schema validates `params` at start-up. */
const detectorSettings = z.strictObject({
  enabled: z.boolean().optional(),
  intervalSeconds: positiveInt(10, 86_400).optional(),
  lookbackSeconds: positiveInt(10, 7 * 86_400).optional(),
  cooldownSeconds: positiveInt(0, 30 * 86_400).optional(),
  params: z.record(z.string(), z.unknown()).optional(),
  allowlist: allowlist.optional(),
});

const detection = z
  .strictObject({
    internalNetworks: z.array(cidr).default(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7']),
    /** Indicator files: IP addresses and CIDRs, one a line, `#` comments; re-read when they change. */
    threatIntel: z.array(z.string().min(1)).default([]),
    /** Scheduled windows end this many seconds in the past (flows still on their way to storage). */
    lagSeconds: positiveInt(0, 3_600).default(15),
    /** A detector query running longer than this is stopped and the run counted as failed. */
    queryTimeoutSeconds: positiveInt(1, 3_600).default(120),
    /** Detector runs at once in this process (they share the CPU with ingest). */
    concurrency: positiveInt(1, 16).default(1),
    /** For every detector. */
    allowlist,
    detectors: z.record(z.string(), detectorSettings).default({}),
  })
  .prefault({});

export const configSchema = z.strictObject({
  /** Embedded ClickHouse data, the spool and persisted templates. */
  dataDir: z
    .string()
    .min(1)
    .refine((s) => !/[*?{}[\]]/.test(s), { message: 'must not contain glob characters * ? { } [ ]' })
    .default('./data'),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  collector,
  decoder,
  storage,
  api,
  scheduler,
  detection,
  siem: siemSchema,
});

export type Config = z.infer<typeof configSchema>;
