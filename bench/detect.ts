import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../src/common/logger.js';
import { configSchema } from '../src/config/schema.js';
import { createDetection } from '../src/detect/index.js';
import { type ExportField, ExportPacketBuilder, encodeRecord } from '../src/export/packet-builder.js';
import { openStore, queryRows, type Store } from '../src/storage/clickhouse.js';
import { migrate } from '../src/storage/migrate.js';
import { freeTcpPort, waitUntilHealthy } from '../test/support/service.js';
import { CLI, ensureDir, fromRoot, ROOT, sleep, table, WORK } from './lib/common.js';
import { V9_E2E_FIELDS, writeLoadPcap } from './lib/loads.js';
import { dayOffsetSeconds, generateInsertSql, injectedEvents } from './lib/query-data.js';

/**
 * Detection benchmark (`npm run bench -- detect`), two parts:
 *
 * 1. Cost: each detector's scheduled windows over one hour (14:00-15:00, the busiest) of the query
 *    benchmark's 50 M-flows-a-day dataset (bench/lib/query-data.ts, with the hour before as context),
 *    run by the engine on the embedded store: run time per window against the detector's interval.
 * 2. Sustained: `flowsentry serve` with its default configuration (collector, writer, embedded store and
 *    the in-process scheduler running every detector at its default interval) under a steady NetFlow
 *    v9 load from udpblast; an external port scan is sent halfway. Offered against stored records,
 *    every detector run's duration against its interval, and the delay from the scan's first flow to
 *    its finding.
 *
 * chDB allows one data directory per process: the cost part runs in a child process of its own.
 */

const ISOLATED = 'FLOWSENTRY_BENCH_DETECT_CHILD';
const DB_DIR = join(WORK, 'detect-db');
const PORT = 20_555;
const log = (message: string) => process.stderr.write(`[detect] ${message}\n`);

/** Fraction of the day's rows before `secs` (the inverse of dayOffsetSeconds, by bisection). */
function rowFraction(secs: number): number {
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (dayOffsetSeconds(mid) < secs) lo = mid;
    else hi = mid;
  }
  return hi;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function cost(): Promise<string> {
  const total = Number(process.env.BENCH_QUERY_ROWS ?? 50_000_000);
  const daySecs = Math.floor(Date.now() / 86_400_000) * 86_400 - 86_400;
  const first = Math.floor(total * rowFraction(13 * 3600));
  const last = Math.ceil(total * rowFraction(15 * 3600));
  rmSync(DB_DIR, { recursive: true, force: true });
  ensureDir(DB_DIR);
  const store = await openStore({ url: '', user: 'default', password: '', database: 'flowsentry' }, DB_DIR);
  try {
    await migrate(store, silentLogger(), join(ROOT, 'migrations'));
    for (let start = first; start < last; start += 5_000_000) {
      await store.client.command({
        query: generateInsertSql(daySecs, total, start, Math.min(5_000_000, last - start)),
      });
    }
    for (const event of injectedEvents(daySecs)) {
      if (event.lastOffsetSecs >= 13 * 3600 && event.lastOffsetSecs < 15 * 3600) {
        await store.client.command({ query: event.sql });
      }
    }
    const [{ n = 0 } = {}] = await queryRows<{ n: number }>(
      store,
      `SELECT count() AS n FROM flows WHERE time_received >= toDateTime({a:UInt32}, 'UTC') AND time_received < toDateTime({b:UInt32}, 'UTC')`,
      { a: daySecs + 14 * 3600, b: daySecs + 15 * 3600 },
    );
    log(`${last - first} rows for 13:00-15:00, ${n} of them received 14:00-15:00`);
    const config = configSchema.parse({ dataDir: DB_DIR });
    const { engine } = createDetection(config, store, silentLogger());
    const rows: Array<Array<string | number>> = [];
    const from = (daySecs + 14 * 3600) * 1000;
    const to = (daySecs + 15 * 3600) * 1000;
    for (const d of engine.detectors.values()) {
      const interval = d.intervalSeconds * 1000;
      const extra = Math.max(0, d.lookbackSeconds - d.intervalSeconds) * 1000;
      const durations: number[] = [];
      let created = 0;
      let errors = 0;
      for (let w = Math.floor(from / interval) * interval; w < to; w += interval) {
        const t = performance.now();
        const r = await engine.runWindow(d.definition.id, {
          mode: 'scheduled',
          from: w,
          to: w + interval,
          contextFrom: w - extra,
          range: null,
        });
        durations.push(performance.now() - t);
        created += r.created.length;
        if (r.error) errors++;
      }
      durations.sort((a, b) => a - b);
      const max = durations[durations.length - 1] ?? 0;
      rows.push([
        d.definition.id,
        d.intervalSeconds,
        d.lookbackSeconds,
        durations.length,
        Math.round(percentile(durations, 0.5)),
        Math.round(max),
        `${((100 * max) / interval).toFixed(2)} %`,
        created,
        errors,
      ]);
      log(`${d.definition.id}: ${durations.length} windows, max ${Math.round(max)} ms`);
    }
    return [
      '### Detector cost over one hour of the 50 M-flows-a-day dataset',
      '',
      `${n.toLocaleString('en-US')} flows received 14:00-15:00 (the peak hour; rows from 13:00 give the first windows their context), embedded store, default detector settings, each detector's scheduled windows run one after another by the engine (findings written as in service).`,
      '',
      table(
        [
          'detector',
          'interval s',
          'lookback s',
          'windows',
          'median ms',
          'max ms',
          'max / interval',
          'findings',
          'errors',
        ],
        rows,
      ),
    ].join('\n');
  } finally {
    await store.close();
  }
}

const F = (id: number, length: number): ExportField => ({ id, length });

/**
 * A steady office-like load: 1,000,000 v9 records from 20,000 internal clients to 65,536 Internet
 * addresses (web, DNS, NTP), completed TCP sessions, as in the end-to-end benchmark's template.
 */
function buildLoad(records: number, nowSecs: number): Uint8Array[] {
  const packets: Uint8Array[] = [];
  let sequence = 0;
  const header = () => ({ exportSecs: nowSecs, sequence: sequence++, sysUptimeMs: 3_600_000 });
  for (let i = 0; i < records; i += 31) {
    if (packets.length % 1000 === 0) {
      packets.push(
        new ExportPacketBuilder(9, 0).templates([{ id: 256, fields: V9_E2E_FIELDS }]).build(header()),
      );
    }
    const recs: Uint8Array[] = [];
    for (let j = i; j < Math.min(records, i + 31); j++) {
      const c = j % 20_000;
      const service = j % 10;
      const [proto, port, flags] =
        service < 7 ? [6, 443, 0x1b] : service < 8 ? [6, 80, 0x1b] : service < 9 ? [17, 53, 0] : [17, 123, 0];
      recs.push(
        encodeRecord(V9_E2E_FIELDS, [
          `10.1.${c >> 8}.${c & 255}`,
          `198.18.${(j >> 8) & 255}.${j & 255}`,
          '10.255.0.1',
          1,
          2,
          1 + (j % 40),
          proto === 6 ? 120 * (1 + (j % 40)) : 80,
          3_500_000,
          3_599_000,
          32_768 + (j % 28_000),
          port,
          flags,
          proto,
          0,
          64_512,
          64_513,
          16,
          8,
        ]),
      );
    }
    packets.push(new ExportPacketBuilder(9, 0).data(256, recs).build(header()));
  }
  return packets;
}

const SCAN_FIELDS = [
  F(8, 4),
  F(12, 4),
  F(7, 2),
  F(11, 2),
  F(4, 1),
  F(6, 1),
  F(2, 4),
  F(1, 4),
  F(22, 4),
  F(21, 4),
];

/** An external SYN scan of 300 ports, as one exporter's v9 packets with times of now. */
async function sendScan(): Promise<number> {
  const uptime = 7_200_000;
  const now = Date.now();
  const packets: Uint8Array[] = [];
  for (let p = 0; p < 300; p += 30) {
    const recs = [];
    for (let port = p + 1; port <= p + 30; port++) {
      recs.push(
        encodeRecord(SCAN_FIELDS, [
          '203.0.113.66',
          '10.1.0.9',
          40_000,
          port,
          6,
          0x02,
          1,
          44,
          uptime - 2_000,
          uptime - 2_000,
        ]),
      );
    }
    packets.push(
      new ExportPacketBuilder(9, 7)
        .templates([{ id: 300, fields: SCAN_FIELDS }])
        .data(300, recs)
        .build({ exportSecs: Math.floor(now / 1000), sequence: p / 30, sysUptimeMs: uptime }),
    );
  }
  const socket = dgram.createSocket('udp4');
  for (const payload of packets) {
    await new Promise<void>((resolve, reject) =>
      socket.send(payload, PORT, '127.0.0.1', (e) => (e ? reject(e) : resolve())),
    );
  }
  socket.close();
  return now;
}

async function sustained(): Promise<string> {
  const rate = Number(process.env.BENCH_DETECT_RATE ?? 200_000);
  const seconds = Number(process.env.BENCH_DETECT_SECONDS ?? 600);
  const records = 1_000_000;
  const blast = join(WORK, 'udpblast');
  if (!existsSync(blast)) execFileSync('cc', ['-O2', '-o', blast, fromRoot('bench', 'udpblast.c')]);
  const pcap = join(WORK, 'detect-load.pcap');
  writeLoadPcap(pcap, buildLoad(records, Math.floor(Date.now() / 1000)), PORT);
  const packetsPerLoop = Math.ceil(records / 31) + Math.ceil(records / 31 / 1000);
  const loops = Math.max(1, Math.round((rate * seconds) / records));
  const pps = Math.round((rate * packetsPerLoop) / records);

  const dir = join(WORK, 'detect-service');
  rmSync(dir, { recursive: true, force: true });
  ensureDir(dir);
  const http = `http://127.0.0.1:${await freeTcpPort()}`;
  const service: ChildProcess = spawn(process.execPath, [CLI, 'serve'], {
    env: {
      ...process.env,
      FLOWSENTRY_DATA_DIR: join(dir, 'data'),
      FLOWSENTRY_LISTEN_UDP: `127.0.0.1:${PORT}`,
      FLOWSENTRY_LISTEN_HTTP: http.slice(7),
      FLOWSENTRY_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const get = async <T>(path: string): Promise<T> => (await (await fetch(`${http}${path}`)).json()) as T;
  await waitUntilHealthy(service, http, () => '', 60_000);
  const detectors = await get<{ items: Array<{ id: string; interval_seconds: number }> }>(
    '/api/v1/detectors',
  );
  log(`load: ${rate} records/s for ${seconds} s (${loops} loops of ${records} records at ${pps} packets/s)`);
  const started = Date.now();
  const sender = spawn(blast, [pcap, String(PORT), String(pps), String(loops)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let senderOut = '';
  sender.stdout!.on('data', (d: Buffer) => {
    senderOut += d.toString();
  });
  const senderDone = new Promise<void>((resolve) => sender.once('exit', () => resolve()));
  await sleep((seconds * 1000) / 2);
  const scanAt = await sendScan();
  log('scan sent');
  let scanFound: number | null = null;
  const watch = (async () => {
    for (let i = 0; i < 600 && scanFound === null; i++) {
      const page = await get<{ items: Array<{ src_ip: string; created_at: string }> }>(
        '/api/v1/findings?detector=vertical-port-scan&limit=100',
      ).catch(() => ({ items: [] }));
      const hit = page.items.find((f) => f.src_ip === '203.0.113.66');
      if (hit) scanFound = Date.parse(hit.created_at);
      else await sleep(1000);
    }
  })();
  await senderDone;
  const sentPps = Number(/= (\d+) pkt\/s/.exec(senderOut)?.[1] ?? 0);
  const sendSeconds = (Date.now() - started) / 1000;
  const offered = loops * records + 300;
  type CollectorState = {
    listeners: Array<{ queue_dropped_packets: number; kernel: { drops: number } }>;
    spool: { droppedRecords: number };
    storage: { spoolBytes: number };
  };
  // Wait for the spool to drain: everything stored, or the spool empty and nothing new for 6 s (30 min at most).
  let stored = -1;
  let collector = await get<CollectorState>('/api/v1/collector');
  let spoolPeak = collector.storage.spoolBytes;
  for (let i = 0, stable = 0; i < 1800 && stored < offered; i++) {
    await sleep(1000);
    const { flows } = await get<{ flows: number }>(
      '/api/v1/flows/summary?from=1970-01-01T00:00:00Z&to=2200-01-01T00:00:00Z',
    );
    collector = await get<CollectorState>('/api/v1/collector');
    spoolPeak = Math.max(spoolPeak, collector.storage.spoolBytes);
    stable = flows === stored ? stable + 1 : 0;
    stored = flows;
    if (stable >= 6 && collector.storage.spoolBytes === 0) break;
  }
  const drainSeconds = (Date.now() - started) / 1000 - sendSeconds;
  await watch;
  service.kill('SIGTERM');
  await new Promise<void>((resolve) => service.once('exit', () => resolve()));

  const store: Store = await openStore(
    { url: '', user: 'default', password: '', database: 'flowsentry' },
    join(dir, 'data'),
  );
  let runs: Array<{ detector: string; n: number; p50: number; max: number; errors: number }>;
  try {
    runs = await queryRows(
      store,
      `SELECT detector, count() AS n, quantile(0.5)(duration_ms) AS p50, max(duration_ms) AS max, countIf(status = 'error') AS errors
       FROM detector_runs WHERE run_mode = 'scheduled' GROUP BY detector ORDER BY detector`,
    );
  } finally {
    await store.close();
  }
  const l = collector.listeners[0]!;
  const interval = new Map(detectors.items.map((d) => [d.id, d.interval_seconds]));
  const rows = runs.map((r) => {
    const i = interval.get(r.detector) ?? 0;
    return [
      r.detector,
      i,
      Number(r.n),
      Math.round(Number(r.p50)),
      Number(r.max),
      `${((100 * Number(r.max)) / (i * 1000)).toFixed(1)} %`,
      Number(r.errors),
    ];
  });
  return [
    `### Sustained: ${rate.toLocaleString('en-US')} records/s for ${seconds} s with every detector scheduled`,
    '',
    `\`flowsentry serve\` with its default configuration (in-process scheduler, ${detectors.items.length} detectors at their default intervals, embedded store); udpblast sent a 1 M-record NetFlow v9 load (20,000 internal clients, web/DNS/NTP to 65,536 Internet addresses) ${loops} times at ${pps} packets/s (reached ${sentPps} packets/s, ${sendSeconds.toFixed(0)} s), on the same 2 cores.`,
    '',
    table(
      [
        'offered records',
        'stored',
        'lost',
        'kernel drops (datagrams)',
        'queue drops (datagrams)',
        'spool dropped (records)',
        'spool peak MiB (after the load)',
        'drain after the load',
        'scan: first flow → finding',
      ],
      [
        [
          offered,
          stored,
          offered - stored,
          l.kernel.drops,
          l.queue_dropped_packets,
          collector.spool.droppedRecords,
          (spoolPeak / 2 ** 20).toFixed(0),
          `${drainSeconds.toFixed(0)} s${collector.storage.spoolBytes > 0 ? ` (${(collector.storage.spoolBytes / 2 ** 20).toFixed(0)} MiB still spooled at stop)` : ''}`,
          scanFound === null ? 'not found' : `${((scanFound - scanAt) / 1000).toFixed(1)} s`,
        ],
      ],
    ),
    '',
    'Scheduled runs during the load (duration of each window against the detector interval):',
    '',
    table(['detector', 'interval s', 'runs', 'median ms', 'max ms', 'max / interval', 'errors'], rows),
    '',
    'No detector uses a materialized view or per-host aggregate on the insert path: detectors read the flows table, so ingest pays nothing for them beyond the CPU their queries take.',
  ].join('\n');
}

async function run(): Promise<string> {
  const parts: string[] = [];
  if (process.env.BENCH_DETECT_PARTS?.includes('cost') ?? true) parts.push(await cost());
  return parts.join('\n\n');
}

/** The cost part in a child process (one chDB data directory per process), then the sustained part. */
export async function main(): Promise<string> {
  if (process.env[ISOLATED] === '1') return run();
  const self = fileURLToPath(import.meta.url);
  const sections: string[] = [];
  const wanted = process.env.BENCH_DETECT_PARTS ?? 'cost,sustained';
  if (wanted.includes('cost')) {
    sections.push(
      await new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, [self], {
          env: { ...process.env, [ISOLATED]: '1', BENCH_DETECT_PARTS: 'cost' },
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
        });
        child.once('error', reject);
        child.once('exit', (code) =>
          code === 0 ? resolve(out.trim()) : reject(new Error(`detect cost exited with ${code}`)),
        );
      }),
    );
  }
  if (wanted.includes('sustained')) sections.push(await sustained());
  const env = ['BENCH_DETECT_PARTS', 'BENCH_DETECT_RATE', 'BENCH_DETECT_SECONDS', 'BENCH_QUERY_ROWS']
    .filter((n) => process.env[n])
    .map((n) => `${n}='${process.env[n]}' `)
    .join('');
  return `## Detection\n\n${sections.join('\n\n')}\n\nCommand: \`${env}npm run bench -- detect\`.`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${await main()}\n`);
}
