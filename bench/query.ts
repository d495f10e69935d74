import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../src/common/logger.js';
import { openStore, queryRows, type Store } from '../src/storage/clickhouse.js';
import { migrate } from '../src/storage/migrate.js';
import { ensureDir, machine, ROOT, sleep, table, WORK } from './lib/common.js';
import {
  dayOffsetSeconds,
  EXFIL_HOUR_OFFSET,
  generateInsertSql,
  injectedEvents,
  SCAN_WINDOW_OFFSET,
} from './lib/query-data.js';

/**
 * Query benchmark (issue: "the queries the detectors and the API run over a day of flows (e.g. 50 M
 * rows) answer in under a second on the embedded engine; report the schema's bytes per stored flow").
 *
 * Generates a day of synthetic flows into a fresh embedded store (bench/lib/query-data.ts), in time
 * order and in 5 M-row INSERTs as a collector would add them (so the rollup views run too), then times
 * the API summary, detector-shaped queries (the shapes of src/detect/detectors/) and rollup reads: one warm-up run, then
 * best and median of three. Reports numbers; nothing here fails on a slow query.
 *
 * chDB allows one on-disk data directory per process, so main() runs the work in a child process of
 * its own: a runner that opened another store in its process can still collect this section.
 */

const COMMAND =
  'npx tsc -p bench/tsconfig.json && BENCH_QUERY_ROWS=50000000 node .bench/build/bench/query.js';
const ISOLATED = 'FLOWSENTRY_BENCH_QUERY_CHILD';
const CHUNK_ROWS = 5_000_000;
const RUNS = 3;
const DB_DIR = join(WORK, 'query-db');

const log = (message: string) => process.stderr.write(`[query] ${message}\n`);
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const fixed = (n: number, digits = 1) => n.toFixed(digits);

interface BenchQuery {
  readonly id: string;
  /** What it mirrors. */
  readonly what: string;
  /** Abbreviated text for the table. */
  readonly short: string;
  readonly sql: string;
  readonly params?: Record<string, unknown>;
}

interface Timing {
  readonly query: BenchQuery;
  readonly rows: number;
  readonly first: string;
  readonly best: number;
  readonly median: number;
  /** Granules left after the primary key and skip indexes, out of all in the table (EXPLAIN indexes = 1). */
  readonly granules: string;
}

/** Formats a wall-clock day offset as hh:mm. */
const hhmm = (secs: number) =>
  `${String(Math.floor(secs / 3600)).padStart(2, '0')}:${String(Math.floor((secs % 3600) / 60)).padStart(2, '0')}`;

function queries(daySecs: number): BenchQuery[] {
  const dayEnd = daySecs + 86_400;
  const scanFrom = daySecs + SCAN_WINDOW_OFFSET;
  const scanTo = scanFrom + 600;
  const peakFrom = daySecs + EXFIL_HOUR_OFFSET;
  const peakTo = peakFrom + 3600;
  const lastFrom = dayEnd - 3600;
  const dt = (secs: number) => `toDateTime(${secs}, 'UTC')`;
  // The API's own summary statement (src/api/app.ts), with the same parameters.
  const summary = `SELECT count() AS flows, sum(bytes) AS bytes, sum(packets) AS packets
FROM flows
WHERE flow_end >= fromUnixTimestamp64Milli({from:Int64}) AND flow_end < fromUnixTimestamp64Milli({to:Int64})`;
  // Failed TCP attempts (as the brute-force and sweep detectors count them): SYN without ACK, or SYN+RST in at most 3 packets; biflow
  // records must also have no reverse packets (always 0 in uniflow records, so harmless there).
  const failed = `proto = 6
  AND (bitAnd(tcp_flags, 0x12) = 0x02 OR (bitAnd(tcp_flags, 0x06) = 0x06 AND packets <= 3))
  AND reverse_packets = 0`;
  const scanWindow = `time_received >= ${dt(scanFrom)} AND time_received < ${dt(scanTo)}`;
  // IPv4 lives in IPv6 columns as ::ffff:a.b.c.d, so IPv4 prefixes get 96 more bits.
  const internalCidrs = [
    '::ffff:10.0.0.0/104',
    '::ffff:172.16.0.0/108',
    '::ffff:192.168.0.0/112',
    'fc00::/7',
  ];
  const inRange = (column: string) =>
    `(${internalCidrs.map((c) => `isIPAddressInRange(${column}, '${c}')`).join(' OR ')})`;
  const between = (column: string) =>
    `(${column} BETWEEN toIPv6('10.0.0.0') AND toIPv6('10.255.255.255')
    OR ${column} BETWEEN toIPv6('172.16.0.0') AND toIPv6('172.31.255.255')
    OR ${column} BETWEEN toIPv6('192.168.0.0') AND toIPv6('192.168.255.255')
    OR ${column} BETWEEN toIPv6('fc00::') AND toIPv6('fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'))`;
  const d7 = (
    internal: (column: string) => string,
  ) => `SELECT src_addr, dst_addr, sum(bytes) AS bytes, count() AS flows
FROM flows
WHERE time_received >= ${dt(peakFrom)} AND time_received < ${dt(peakTo)}
  AND ${internal('src_addr')} AND NOT ${internal('dst_addr')}
GROUP BY src_addr, dst_addr
HAVING bytes >= 100000000
ORDER BY bytes DESC`;
  const rollupTop = (
    tableName: string,
  ) => `SELECT exporter_address, in_if, sum(bytes) AS bytes, sum(flows) AS flows
FROM ${tableName}
WHERE time_bucket >= ${dt(daySecs)} AND time_bucket < ${dt(dayEnd)}
GROUP BY exporter_address, in_if
ORDER BY bytes DESC
LIMIT 20`;
  // Client 0 is the most active internal host; client 19,000 sees about a thousand flows a day.
  const busyHost = '10.0.1.1';
  const quietHost = '10.0.77.1';
  return [
    {
      id: 'a1',
      what: 'API summary, whole day',
      short: 'SELECT count(), sum(bytes), sum(packets) FROM flows WHERE flow_end in [00:00, 24:00)',
      sql: summary,
      params: { from: daySecs * 1000, to: dayEnd * 1000 },
    },
    {
      id: 'a2',
      what: `API summary, 1 hour (${hhmm(EXFIL_HOUR_OFFSET)}, the busiest)`,
      short: `… WHERE flow_end in [${hhmm(EXFIL_HOUR_OFFSET)}, ${hhmm(EXFIL_HOUR_OFFSET + 3600)})`,
      sql: summary,
      params: { from: peakFrom * 1000, to: peakTo * 1000 },
    },
    {
      id: 'a3',
      what: 'API summary, whole day, one exporter',
      short: "… whole day AND exporter_address = toIPv6('10.255.0.3')",
      sql: `${summary}\n  AND exporter_address = toIPv6({exporter:String})`,
      params: { from: daySecs * 1000, to: dayEnd * 1000, exporter: '10.255.0.3' },
    },
    {
      id: 'b',
      what: `D1 vertical scan, 10 min (${hhmm(SCAN_WINDOW_OFFSET)}-${hhmm(SCAN_WINDOW_OFFSET + 600)})`,
      short:
        'SELECT src, dst, 5-min bucket, uniqExact(dst_port) AS ports … WHERE failed TCP GROUP BY src, dst, bucket HAVING ports >= 15',
      sql: `SELECT src_addr, dst_addr, toStartOfFiveMinutes(time_received) AS w,
  uniqExact(dst_port) AS ports, groupUniqArray(20)(dst_port) AS sample_ports
FROM flows
WHERE ${scanWindow}
  AND ${failed}
GROUP BY src_addr, dst_addr, w
HAVING ports >= 15
ORDER BY ports DESC`,
    },
    {
      id: 'c',
      what: 'D2 horizontal sweep, same 10 min',
      short:
        'SELECT src, dst_port, 5-min bucket, uniqExact(dst_addr) AS hosts … WHERE failed TCP GROUP BY src, dst_port, bucket HAVING hosts >= 25',
      sql: `SELECT src_addr, dst_port, toStartOfFiveMinutes(time_received) AS w,
  uniqExact(dst_addr) AS hosts, groupUniqArray(10)(dst_addr) AS sample_hosts
FROM flows
WHERE ${scanWindow}
  AND ${failed}
GROUP BY src_addr, dst_port, w
HAVING hosts >= 25
ORDER BY hosts DESC`,
    },
    {
      id: 'd1',
      what: 'top 20 talkers, last hour (23:00-24:00), raw flows',
      short: 'SELECT src_addr, sum(bytes) … GROUP BY src_addr ORDER BY bytes DESC LIMIT 20',
      sql: `SELECT src_addr, sum(bytes) AS bytes, sum(packets) AS packets, count() AS flows
FROM flows
WHERE time_received >= ${dt(lastFrom)} AND time_received < ${dt(dayEnd)}
GROUP BY src_addr
ORDER BY bytes DESC
LIMIT 20`,
    },
    {
      id: 'd2',
      what: 'top 20 exporter interfaces, whole day, flows_1h',
      short:
        'SELECT exporter_address, in_if, sum(bytes) FROM flows_1h … GROUP BY 1, 2 ORDER BY bytes DESC LIMIT 20',
      sql: rollupTop('flows_1h'),
    },
    {
      id: 'd3',
      what: 'top 20 exporter interfaces, whole day, flows_1m',
      short: 'same over flows_1m',
      sql: rollupTop('flows_1m'),
    },
    ...[
      { id: 'e1', host: busyHost, label: 'the busiest' },
      { id: 'e2', host: quietHost, label: 'a quiet one' },
    ].flatMap(({ id, host, label }) => {
      const day = `time_received >= ${dt(daySecs)} AND time_received < ${dt(dayEnd)}`;
      const x = `toIPv6('${host}')`;
      return [
        {
          id,
          what: `all flows of one host (${host}, ${label}), whole day`,
          short: 'SELECT count(), sum(bytes) FROM flows WHERE day AND (src_addr = X OR dst_addr = X)',
          sql: `SELECT count() AS flows, sum(bytes) AS bytes
FROM flows
WHERE ${day}
  AND (src_addr = ${x} OR dst_addr = ${x})`,
        },
        {
          // The OR keeps ClickHouse from using the primary key (src_addr) and the dst_addr bloom filter;
          // two branches can each use one.
          id: `${id}u`,
          what: `as ${id}, as UNION ALL of src = X and dst = X AND src != X`,
          short: 'SELECT sum(…) FROM (… WHERE src_addr = X UNION ALL … WHERE dst_addr = X AND src_addr != X)',
          sql: `SELECT sum(flows) AS flows, sum(bytes) AS bytes FROM (
  SELECT count() AS flows, sum(bytes) AS bytes FROM flows WHERE ${day} AND src_addr = ${x}
  UNION ALL
  SELECT count() AS flows, sum(bytes) AS bytes FROM flows WHERE ${day} AND dst_addr = ${x} AND src_addr != ${x}
)`,
        },
      ];
    }),
    {
      id: 'f1',
      what: `D7 outbound ≥ 100 MB per pair, 1 hour (${hhmm(EXFIL_HOUR_OFFSET)}), isIPAddressInRange`,
      short:
        "… WHERE (isIPAddressInRange(src_addr, '::ffff:10.0.0.0/104') OR …) AND NOT (… dst_addr …) GROUP BY src, dst HAVING bytes >= 1e8",
      sql: d7(inRange),
    },
    {
      id: 'f2',
      what: 'D7 as f1, ranges as BETWEEN on IPv6',
      short: "… WHERE (src_addr BETWEEN toIPv6('10.0.0.0') AND toIPv6('10.255.255.255') OR …) …",
      sql: d7(between),
    },
  ];
}

async function command(store: Store, query: string): Promise<void> {
  await store.client.command({ query });
}

/** Waits until no merge has been running for three consecutive seconds (at most `maxMs`). */
async function waitForMerges(store: Store, maxMs: number): Promise<number> {
  const started = performance.now();
  let quiet = 0;
  while (performance.now() - started < maxMs && quiet < 3) {
    const [row] = await queryRows<{ merges: number }>(
      store,
      'SELECT count() AS merges FROM system.merges WHERE database = currentDatabase()',
    );
    quiet = Number(row?.merges ?? 0) === 0 ? quiet + 1 : 0;
    await sleep(1000);
  }
  return (performance.now() - started) / 1000;
}

function abridged(row: unknown): string {
  if (row === undefined) return '—';
  const text = JSON.stringify(row)
    .replace(/"/g, '')
    .replace(/::ffff:/g, '')
    .replace(/\|/g, '\\|');
  return text.length > 90 ? `${text.slice(0, 87)}…` : text;
}

/** The granules the last index step of `EXPLAIN indexes = 1` keeps, as "kept / total". */
async function granules(store: Store, query: BenchQuery): Promise<string> {
  try {
    const result = await store.client.query({
      query: `EXPLAIN indexes = 1 ${query.sql}`,
      format: 'TabSeparatedRaw',
      query_params: query.params ?? {},
    });
    // Per table read: the first index step sees every granule of the table, the last leaves what is read.
    const reads = (await result.text()).split('ReadFromMergeTree').slice(1);
    const parts = reads.flatMap((text) => {
      const matches = [...text.matchAll(/Granules: (\d+)\/(\d+)/g)];
      const first = matches[0];
      const last = matches[matches.length - 1];
      return first && last ? [`${last[1]} / ${first[2]}`] : [];
    });
    return parts.length > 0 ? parts.join(' + ') : '—';
  } catch {
    return '—';
  }
}

async function timeQuery(store: Store, query: BenchQuery): Promise<Timing> {
  let rows: unknown[] = await queryRows<unknown>(store, query.sql, query.params ?? {});
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    rows = await queryRows<unknown>(store, query.sql, query.params ?? {});
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return {
    query,
    rows: rows.length,
    first: abridged(rows[0]),
    best: times[0]!,
    median: times[Math.floor(RUNS / 2)]!,
    granules: await granules(store, query),
  };
}

async function run(): Promise<string> {
  const total = Number(process.env.BENCH_QUERY_ROWS ?? 50_000_000);
  if (!Number.isInteger(total) || total < 100_000)
    throw new Error('BENCH_QUERY_ROWS must be an integer ≥ 100000');
  // Yesterday (UTC), so the 30-day TTL keeps every part.
  const daySecs = Math.floor(Date.now() / 86_400_000) * 86_400 - 86_400;
  const day = new Date(daySecs * 1000).toISOString().slice(0, 10);

  rmSync(DB_DIR, { recursive: true, force: true });
  ensureDir(DB_DIR);
  const store = await openStore({ url: '', user: 'default', password: '', database: 'flowsentry' }, DB_DIR);
  try {
    await migrate(store, silentLogger(), join(ROOT, 'migrations'));
    const [version] = await queryRows<{ v: string }>(store, 'SELECT version() AS v');

    // Generation: chunks in time order; each injected event right after the chunk that reaches its time.
    const pending = injectedEvents(daySecs);
    const injected = pending.map((e) => `${e.name} (${e.rows} rows)`);
    let injectedRows = 0;
    const insertStarted = performance.now();
    for (let start = 0; start < total; start += CHUNK_ROWS) {
      const count = Math.min(CHUNK_ROWS, total - start);
      await command(store, generateInsertSql(daySecs, total, start, count));
      const reached = start + count >= total ? 86_400 : dayOffsetSeconds((start + count) / total);
      while (pending[0] && pending[0].lastOffsetSecs < reached) {
        const event = pending.shift()!;
        await command(store, event.sql);
        injectedRows += event.rows;
      }
      const secs = (performance.now() - insertStarted) / 1000;
      log(
        `${start + count} / ${total} rows up to ${hhmm(reached)} in ${fixed(secs)} s (${fixed((start + count) / secs / 1e6, 2)} M rows/s)`,
      );
    }
    const insertSecs = (performance.now() - insertStarted) / 1000;
    log('waiting for background merges to settle');
    const mergeWait = await waitForMerges(store, 300_000);

    const parts = await queryRows<{
      table: string;
      rows: number;
      parts: number;
      c: number;
      u: number;
      d: number;
    }>(
      store,
      `SELECT table, sum(rows) AS rows, count() AS parts, sum(data_compressed_bytes) AS c,
         sum(data_uncompressed_bytes) AS u, sum(bytes_on_disk) AS d
       FROM system.parts
       WHERE database = currentDatabase() AND active AND table IN ('flows', 'flows_1m', 'flows_1h')
       GROUP BY table ORDER BY table`,
    );
    const flows = parts.find((p) => p.table === 'flows');
    const stored = Number(flows?.rows ?? 0);
    const columns = await queryRows<{ name: string; c: number; u: number }>(
      store,
      `SELECT name, data_compressed_bytes AS c, data_uncompressed_bytes AS u
       FROM system.columns WHERE database = currentDatabase() AND table = 'flows' ORDER BY c DESC`,
    );
    const [indexes] = await queryRows<{ c: number }>(
      store,
      `SELECT sum(secondary_indices_compressed_bytes) AS c FROM system.parts
       WHERE database = currentDatabase() AND active AND table = 'flows'`,
    );

    log('timing queries');
    const timings: Timing[] = [];
    for (const q of queries(daySecs)) {
      const t = await timeQuery(store, q);
      log(`${q.id}: best ${fixed(t.best, 0)} ms, median ${fixed(t.median, 0)} ms, ${t.rows} rows`);
      timings.push(t);
    }

    const perFlow = (bytes: number) => (stored > 0 ? fixed(bytes / stored, 2) : '—');
    const storageRows = parts.map((p) => [
      `\`${p.table}\``,
      Number(p.rows).toLocaleString('en-US'),
      Number(p.parts),
      mib(Number(p.c)),
      mib(Number(p.u)),
      mib(Number(p.d)),
      perFlow(Number(p.c)),
      perFlow(Number(p.d)),
      perFlow(Number(p.u)),
    ]);
    const columnLine = columns
      .slice(0, 8)
      .map((c) => `${c.name} ${perFlow(Number(c.c))}`)
      .join(', ');
    const slow = timings.filter((t) => t.median >= 1000).map((t) => t.query.id);
    const sweeps = timings.find((t) => t.query.id === 'c')?.rows ?? 0;
    return [
      `### Query latency and bytes per flow (embedded chDB, ${(stored / 1e6).toFixed(1)} M flows over one day)`,
      '',
      `Method: a fresh embedded store (chDB ${version?.v ?? '?'}) under \`.bench/query-db\`, migrated, then ${total.toLocaleString('en-US')} synthetic flows for ${day} (UTC) ` +
        `generated inside ClickHouse with \`INSERT INTO flows SELECT … FROM numbers()\` in ${CHUNK_ROWS / 1e6} M-row inserts in time order (the rollup views ran on every insert), ` +
        `plus ${injectedRows.toLocaleString('en-US')} injected rows: ${injected.join('; ')}. ` +
        `Traffic shape (bench/lib/query-data.ts): ~20k internal hosts with power-law activity, ~200k external addresses with Zipf(1) popularity, ` +
        `a weighted service mix (HTTPS 39 %, DNS 16 %, QUIC 6 %, SSH/RDP/SMB/AD/databases/VPN/NTP/ICMP, background scanning), both directions of most conversations, ` +
        `1-3 % failed TCP attempts, Pareto-tailed packet counts, a diurnal rate peaking at 14:00, six exporters (v9, IPFIX, one IPFIX biflow firewall). ` +
        `Insert: ${fixed(insertSecs)} s (${fixed(stored / insertSecs / 1e6, 2)} M rows/s including the views); then ${fixed(mergeWait)} s waiting for background merges to settle (no OPTIMIZE). ` +
        `Each query ran once to warm up, then ${RUNS} times; wall clock through @clickhouse/client on chDB in this process (includes JSON parsing of the result), page cache warm. ` +
        `Machine: ${machine()}.`,
      '',
      table(
        [
          'table',
          'rows',
          'active parts',
          'compressed MiB',
          'uncompressed MiB',
          'on disk MiB',
          'compressed B/flow',
          'on disk B/flow',
          'uncompressed B/flow',
        ],
        storageRows,
      ),
      '',
      `Bytes per flow are per row of \`flows\` (the rollup rows are also divided by the number of flows, to show what they add). ` +
        `Largest \`flows\` columns, compressed bytes per flow: ${columnLine}; skip indexes ${perFlow(Number(indexes?.c ?? 0))}. ` +
        '**Synthetic data compresses differently from real traffic**: values here come from hash functions over a few distributions, ' +
        'so real address, port and counter sequences may compress better or worse; treat bytes per flow as an estimate of the order of magnitude.',
      '',
      table(
        [
          'id',
          'what',
          'query (abbreviated)',
          'rows',
          'first row (abridged)',
          'granules read / total',
          'best of 3 ms',
          'median of 3 ms',
          'under 1 s',
        ],
        timings.map((t) => [
          t.query.id,
          t.query.what,
          `\`${t.query.short.replace(/\|/g, '\\|')}\``,
          t.rows,
          t.first,
          t.granules,
          fixed(t.best, 0),
          fixed(t.median, 0),
          t.median < 1000 ? 'yes' : '**no**',
        ]),
      ),
      '',
      slow.length === 0
        ? `Every query's median was under one second on ${(stored / 1e6).toFixed(1)} M rows.`
        : `**Over one second (median): ${slow.join(', ')}.**`,
      '',
      'Granules (8,192 rows each) are what the primary key (5-minute bucket, src_addr, dst_addr), the flow_end minmax and the bloom/set skip indexes leave to read. ' +
        'Timings vary between runs on a shared machine (up to 2× was seen for the same query while this script was written); compare orders of magnitude, not single milliseconds.' +
        (sweeps > 1
          ? ` The D2 query returns ${sweeps} groups: the injected sweep first, then synthetic Internet background scanners (as real ones would trip it).`
          : ''),
      '',
      '<details><summary>Full SQL</summary>',
      '',
      ...timings.flatMap((t) => [
        `${t.query.id}${t.query.params ? ` (parameters ${JSON.stringify(t.query.params)})` : ''}:`,
        '',
        '```sql',
        t.query.sql,
        '```',
        '',
      ]),
      '</details>',
      '',
      `Command: \`${COMMAND}\` (BENCH_QUERY_ROWS sets the row count; default 50000000).`,
    ].join('\n');
  } finally {
    await store.close();
    // The table is 1-2 GB at 50 M rows; keep it only when asked (to poke at it with the same data).
    if (process.env.BENCH_QUERY_KEEP !== '1') rmSync(DB_DIR, { recursive: true, force: true });
  }
}

/** Runs the benchmark in a child process (one chDB data directory per process) and returns its section. */
export async function main(): Promise<string> {
  if (process.env[ISOLATED] === '1') return run();
  const self = fileURLToPath(import.meta.url);
  return new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [self], {
      env: { ...process.env, [ISOLATED]: '1' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code === 0) resolve(out.trim());
      else reject(new Error(`query benchmark exited with ${code}`));
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${await main()}\n`);
}
