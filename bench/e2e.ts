import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  createReadStream,
  existsSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { readKernelUdpStats } from '../src/collector/kernel-drops.js';
import { freeTcpPort, waitUntilHealthy } from '../test/support/service.js';
import { CLI, ensureDebianTools, ensureDir, fromRoot, peakRssMiB, sleep, table, WORK } from './lib/common.js';
import { buildV9Load, writeLoadPcap } from './lib/loads.js';

/**
 * End to end, lossless: a NetFlow v9 load of 1,000,000 unique flow records, 31 per datagram (32,292
 * datagrams with the template refreshes), sent by udpblast at rising fixed rates to each collector,
 * TRIALS times per rate, each trial against a fresh collector. What counts is what each tool stored:
 * rows in ClickHouse for flowsentry (through its API), records in nfcapd's files (nfdump), lines
 * written by nfacctd's print plugin (the load's 5-tuples are unique, so nothing aggregates).
 */
const RECORDS = 1_000_000;
const PER_PACKET = 31;
export const PORT = Number(process.env.BENCH_PORT ?? 29955);
const TRIALS = Number(process.env.BENCH_TRIALS ?? 3);
const RATES = (
  process.env.BENCH_RATES ?? '500000,1000000,1500000,2000000,2500000,3000000,3500000,4000000,5000000,6000000'
)
  .split(',')
  .map(Number);
const E2E = ensureDir(join(WORK, 'e2e'));

export interface Tool {
  name: string;
  /** Starts the tool; resolves once it is ready to receive. */
  start(dir: string): Promise<Running>;
}

export interface Running {
  pids(): number[];
  /**
   * Waits until the tool has stored what it received (`expected` records at most), stops it,
   * returns records stored.
   */
  finish(expected?: number): Promise<number>;
  /** Where records were lost, read just before the tool stopped (kernel socket drops included). */
  losses?: () => Record<string, number>;
  /** flowsentry: a GET on its API. */
  api?: <T>(path: string) => Promise<T>;
  /** Extra facts for the table (drops seen by the tool). */
  notes?: () => string;
}

interface Trial {
  stored: number;
  sentPps: number;
  rssMiB: number;
  collectorRssMiB?: number;
  notes: string;
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((r) => {
    if (child.exitCode !== null || child.signalCode !== null) r();
    else child.once('exit', () => r());
  });
}

async function waitForUdpPort(port: number, timeoutMs = 20_000): Promise<void> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (readFileSync('/proc/net/udp', 'utf8').includes(hex)) return;
    await sleep(50);
  }
  throw new Error(`nothing listening on UDP ${port}`);
}

export function childrenOf(pid: number): number[] {
  try {
    const out = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' });
    return out.split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * flowsentry as `npm start` runs it (default configuration), or with `config` as its YAML file.
 * The "receiveNice -10" variant raises the receive thread above the sender and everything else
 * (collector.receiveNice; granted, the bench runs as root), to show what that is worth.
 */
export function flowsentryTool(name: string, config?: string): Tool {
  return {
    name,
    start: (dir) => startFlowsentry(dir, config),
  };
}

async function startFlowsentry(dir: string, config?: string): Promise<Running> {
  const http = await freeTcpPort();
  let configEnv = {};
  if (config !== undefined) {
    const file = join(dir, 'flowsentry.yaml');
    writeFileSync(file, config);
    configEnv = { FLOWSENTRY_CONFIG: file };
  }
  const child = spawn(process.execPath, [CLI, 'serve'], {
    env: {
      ...process.env,
      ...configEnv,
      FLOWSENTRY_DATA_DIR: join(dir, 'data'),
      FLOWSENTRY_LISTEN_UDP: `127.0.0.1:${PORT}`,
      FLOWSENTRY_LISTEN_HTTP: `127.0.0.1:${http}`,
      FLOWSENTRY_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const get = async <T>(path: string): Promise<T> =>
    (await (await fetch(`http://127.0.0.1:${http}${path}`)).json()) as T;
  // Its log goes to this process's stderr, so there is nothing to add to an error.
  await waitUntilHealthy(child, `http://127.0.0.1:${http}`, () => '', 60_000);
  let collectorDrops = '';
  let losses: Record<string, number> = {};
  return {
    pids: () => [child.pid!, ...childrenOf(child.pid!)],
    notes: () => collectorDrops,
    losses: () => losses,
    api: get,
    async finish(expected = RECORDS) {
      let stored = -1;
      let stable = 0;
      // Until everything is stored, or nothing more arrived for 3 s (a spool draining keeps it moving).
      for (let i = 0; i < 2400 && stored < expected && stable < 6; i++) {
        await sleep(500);
        const { flows } = await get<{ flows: number }>(
          '/api/v1/flows/summary?from=1970-01-01T00:00:00Z&to=2200-01-01T00:00:00Z',
        );
        stable = flows === stored ? stable + 1 : 0;
        stored = flows;
      }
      const c = await get<{
        listeners: Array<{ queue_dropped_packets: number; kernel: { drops: number } }>;
        spool: { droppedRecords: number };
      }>('/api/v1/collector');
      const l = c.listeners[0]!;
      losses = {
        kernel_datagrams: l.kernel.drops,
        queue_datagrams: l.queue_dropped_packets,
        spool_records: c.spool.droppedRecords,
      };
      collectorDrops =
        l.kernel.drops || l.queue_dropped_packets
          ? `kernel drops ${l.kernel.drops}, queue drops ${l.queue_dropped_packets}`
          : '';
      await sleep(200);
      child.kill('SIGTERM');
      await exited(child);
      return stored;
    },
  };
}

/** nfcapd with `extra` flags; with `nice`, the whole process runs at that nice value (nice(1) execs it). */
export function nfcapd(name: string, extra: string[], nice?: number): Tool {
  return {
    name,
    async start(dir) {
      const flows = ensureDir(join(dir, 'flows'));
      const args = ['-w', flows, '-p', String(PORT), '-b', '127.0.0.1', '-t', '3600', ...extra];
      const child = spawn(
        nice === undefined ? 'nfcapd' : 'nice',
        nice === undefined ? args : ['-n', String(nice), 'nfcapd', ...args],
        {
          stdio: ['ignore', 'ignore', 'ignore'],
        },
      );
      await waitForUdpPort(PORT);
      let losses: Record<string, number> = {};
      return {
        pids: () => [child.pid!],
        losses: () => losses,
        async finish() {
          await sleep(2000);
          losses = { kernel_datagrams: readKernelUdpStats(PORT).drops };
          child.kill('SIGTERM');
          await exited(child);
          return nfdumpRecords(flows);
        },
      };
    },
  };
}

/** Flow records in an nfcapd directory, from nfdump's statistics of its files (-I). */
function nfdumpRecords(dir: string): number {
  const out = spawnSync('nfdump', ['-R', dir, '-I'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const flows = /^Flows:\s+(\d+)$/m.exec(out.stdout)?.[1];
  if (flows === undefined) throw new Error(`nfdump -I gave no flow count: ${out.stdout}${out.stderr}`);
  return Number(flows);
}

/** Sum of the FLOWS column of nfacctd's CSV (read as a stream: a looped load writes GiBs). */
async function sumFlowsColumn(file: string): Promise<number> {
  let column = -1;
  let total = 0;
  for await (const line of createInterface({ input: createReadStream(file) })) {
    if (line.startsWith('SRC_IP')) column = line.split(',').indexOf('FLOWS');
    else if (line !== '' && column >= 0) total += Number(line.split(',')[column]);
  }
  return total;
}

export function nfacctd(name: string, tuned: boolean): Tool {
  return {
    name,
    async start(dir) {
      const out = join(dir, 'out.csv');
      const conf = join(dir, 'nfacctd.conf');
      writeFileSync(
        conf,
        [
          'daemonize: false',
          'nfacctd_ip: 127.0.0.1',
          `nfacctd_port: ${PORT}`,
          'plugins: print[p]',
          // `flows` adds the FLOWS counter: records merged into one line (a looped load repeats its 5-tuples).
          'aggregate[p]: src_host, dst_host, src_port, dst_port, proto, flows',
          'print_output[p]: csv',
          `print_output_file[p]: ${out}`,
          'print_output_file_append[p]: true',
          'print_refresh_time[p]: 1',
          ...(tuned
            ? [
                // pmacct's CONFIG-KEYS: a larger core→plugin queue for heavy loads, buffers at 1:256 of it.
                'print_cache_entries[p]: 262147',
                'plugin_pipe_size[p]: 268435456',
                'plugin_buffer_size[p]: 1048576',
                'nfacctd_pipe_size: 33554432',
              ]
            : []),
        ].join('\n'),
      );
      const child = spawn('nfacctd', ['-f', conf], { stdio: ['ignore', 'ignore', 'ignore'] });
      await waitForUdpPort(PORT);
      await sleep(1000);
      let losses: Record<string, number> = {};
      return {
        pids: () => [child.pid!, ...childrenOf(child.pid!)],
        losses: () => losses,
        async finish() {
          await sleep(4000);
          losses = { kernel_datagrams: readKernelUdpStats(PORT).drops };
          child.kill('SIGINT');
          await exited(child);
          await sleep(500);
          if (!existsSync(out)) return 0;
          return sumFlowsColumn(out);
        },
      };
    },
  };
}

const flowsentry = flowsentryTool('flowsentry');

export const TOOLS: Tool[] = [
  flowsentry,
  flowsentryTool('flowsentry, receiveNice -10', 'collector:\n  receiveNice: -10\n'),
  nfcapd('nfcapd (defaults)', []),
  nfcapd('nfcapd -B 32M', ['-B', '33554432']),
  // The same priority flowsentry gives its receive thread, for nfcapd's whole process.
  nfcapd('nfcapd -B 32M, nice -10', ['-B', '33554432'], -10),
  nfacctd('nfacctd (defaults)', false),
  nfacctd('nfacctd (tuned)', true),
];

export function prepare(): { pcap: string; blast: string; packets: number } {
  ensureDebianTools([
    { command: 'nfcapd', pkg: 'nfdump' },
    { command: 'nfacctd', pkg: 'pmacct' },
  ]);
  const blast = join(WORK, 'udpblast');
  if (!existsSync(blast)) execFileSync('cc', ['-O2', '-o', blast, fromRoot('bench', 'udpblast.c')]);
  const pcap = join(WORK, 'v9-1m-31.pcap');
  if (!existsSync(pcap) || statSync(pcap).size < 40_000_000) {
    process.stderr.write('building the 1,000,000-record NetFlow v9 load...\n');
    // Export times near now, so flows land in today's partitions like live traffic.
    writeLoadPcap(pcap, buildV9Load(RECORDS, PER_PACKET, Math.floor(Date.now() / 1000)), PORT);
  }
  const packets = Number(
    /\((\d+) distinct\)/.exec(execFileSync(blast, [pcap, '1', '1', '0'], { encoding: 'utf8' }))?.[1] ?? 0,
  );
  return { pcap, blast, packets: packets || 32_292 };
}

async function trial(tool: Tool, rate: number, load: ReturnType<typeof prepare>): Promise<Trial> {
  const dir = join(E2E, tool.name.replace(/[^a-z0-9]+/gi, '-'));
  rmSync(dir, { recursive: true, force: true });
  ensureDir(dir);
  const running = await tool.start(dir);
  const pps = Math.round((rate * load.packets) / RECORDS);
  const sent = execFileSync(load.blast, [load.pcap, String(PORT), String(pps), '1'], { encoding: 'utf8' });
  const sentPps = Number(/= (\d+) pkt\/s/.exec(sent)?.[1] ?? 0);
  // VmHWM is each process's peak; sample it until the tool stops (after that /proc has nothing).
  const peaks = new Map<number, number>();
  const sample = () => {
    for (const pid of running.pids()) peaks.set(pid, Math.max(peaks.get(pid) ?? 0, peakRssMiB(pid)));
  };
  const sampler = setInterval(sample, 100);
  sample();
  const pids = running.pids();
  const stored = await running.finish();
  clearInterval(sampler);
  const rss = pids.map((pid) => peaks.get(pid) ?? 0);
  return {
    stored,
    sentPps,
    rssMiB: rss.reduce((a, b) => a + b, 0),
    ...(tool.name.startsWith('flowsentry') ? { collectorRssMiB: Math.max(...rss.slice(1), 0) } : {}),
    notes: running.notes?.() ?? '',
  };
}

/**
 * BENCH_RMEM_MAX sets net.core.rmem_max for the run (and restores it after): the kernel's cap on the
 * socket buffer every tool asks for (flowsentry and nfcapd -B ask for 32 MiB, nfacctd_pipe_size too).
 */
function withRmemMax<T>(run: () => Promise<T>): Promise<T> {
  const wanted = process.env.BENCH_RMEM_MAX;
  if (!wanted) return run();
  const path = '/proc/sys/net/core/rmem_max';
  const before = readFileSync(path, 'utf8').trim();
  writeFileSync(path, wanted);
  return run().finally(() => writeFileSync(path, before));
}

/** The BENCH_* variables of this run, as a shell prefix for the command line in the results. */
function benchEnv(): string {
  return ['BENCH_RMEM_MAX', 'BENCH_TOOLS', 'BENCH_RATES', 'BENCH_TRIALS']
    .filter((name) => process.env[name])
    .map((name) => `${name}='${process.env[name]}' `)
    .join('');
}

export async function main(): Promise<string> {
  return withRmemMax(measure);
}

async function measure(): Promise<string> {
  const rmemMax = readFileSync('/proc/sys/net/core/rmem_max', 'utf8').trim();
  const load = prepare();
  const rows: Array<Array<string | number>> = [];
  const best = new Map<string, number>();
  const firstLoss = new Map<string, number>();
  const only = process.env.BENCH_TOOLS?.split(',');
  for (const tool of TOOLS.filter((t) => !only || only.includes(t.name))) {
    let clean = 0;
    for (const rate of RATES) {
      const trials: Trial[] = [];
      for (let t = 0; t < TRIALS; t++) {
        trials.push(await trial(tool, rate, load));
        // Let the previous collector's sockets and files go.
        await sleep(300);
      }
      const losses = trials.map((t) => (100 * (RECORDS - t.stored)) / RECORDS);
      const worst = Math.max(...losses);
      const achieved = Math.min(...trials.map((t) => t.sentPps)) * (RECORDS / load.packets);
      // A receiver that takes the sender's CPU slows the sender down; a rate only counts when the
      // sender reached it (within 5 %) in every trial.
      const senderShort = achieved < 0.95 * rate;
      process.stderr.write(`${tool.name} @ ${rate}: stored ${trials.map((t) => t.stored).join(', ')}\n`);
      if (worst === 0 && !senderShort) clean = rate;
      if (worst > 0 && !firstLoss.has(tool.name)) firstLoss.set(tool.name, rate);
      const notes = [...new Set(trials.map((t) => t.notes).filter(Boolean))];
      if (senderShort)
        notes.unshift(`sender reached ${Math.round((100 * achieved) / rate)} % of the rate: not counted`);
      rows.push([
        tool.name,
        rate.toLocaleString('en'),
        Math.round(achieved).toLocaleString('en'),
        Math.min(...trials.map((t) => t.stored)).toLocaleString('en'),
        losses.map((l) => l.toFixed(2)).join(' / '),
        trials.some((t) => t.collectorRssMiB !== undefined)
          ? `${Math.max(...trials.map((t) => t.rssMiB))} (collector ${Math.max(...trials.map((t) => t.collectorRssMiB ?? 0))})`
          : Math.max(...trials.map((t) => t.rssMiB)),
        notes.join('; '),
      ]);
      // Past the first rate where every trial lost records there is nothing more to learn.
      if (losses.every((l) => l > 0)) break;
    }
    best.set(tool.name, clean);
  }
  const ours = best.get('flowsentry') ?? 0;
  const summary = [...best].map(([name, rate]) => [
    name,
    rate ? rate.toLocaleString('en') : 'none of the rates tried',
    firstLoss.get(name)?.toLocaleString('en') ?? 'none',
    name === 'flowsentry' || !rate ? '' : `${(ours / rate).toFixed(2)}x`,
  ]);
  return [
    `### End to end, lossless (1,000,000 NetFlow v9 records, 31 per datagram), net.core.rmem_max=${rmemMax}`,
    '',
    `Each row: ${TRIALS} trials at one offered rate, each against a freshly started collector; "stored" is the worst trial; ` +
      "loss per trial; peak RSS is the largest VmHWM over the trials, summed over the tool's processes " +
      '(flowsentry: the service process with the embedded ClickHouse plus the collector process, shown alone in brackets; ' +
      'nfacctd: core and plugin processes). The sender (udpblast, spinning between sends) shares the 2 cores. ' +
      '"flowsentry" is the default configuration (its receive thread at nice 0, like the peers; decoders and store lower); ' +
      '"flowsentry, receiveNice -10" raises its receive thread above everything else, the sender included ' +
      '(collector.receiveNice; granted, the bench runs as root); "nfcapd -B 32M, nice -10" gives nfcapd the same ' +
      'priority for its whole process. The peers otherwise run at nice 0.',
    '',
    table(
      [
        'tool',
        'offered (records/s)',
        'achieved by sender (records/s)',
        'stored (worst trial)',
        'loss % per trial',
        'peak RSS MiB',
        'notes',
      ],
      rows,
    ),
    '',
    'Highest rate at which every trial stored every record and the sender reached the rate (within 5 %) in every trial:',
    '',
    table(
      ['tool', 'lossless up to (records/s)', 'first rate with a loss in any trial', 'flowsentry vs tool'],
      summary,
    ),
    '',
    'Losses near the limit come and go between runs (a few tens of ms without CPU for the receiving thread ' +
      'overflow the socket buffer), so a tool can lose in one trial at one rate and none at the next; the first-loss ' +
      'column is the stricter reading.',
    '',
    `Command: \`${benchEnv()}npm run bench -- e2e\` (BENCH_RATES, BENCH_TRIALS, BENCH_TOOLS narrow it; BENCH_RMEM_MAX sets the kernel's socket buffer cap for the run).`,
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${await main()}\n`);
  for (const f of readdirSync(E2E)) rmSync(join(E2E, f), { recursive: true, force: true });
}
