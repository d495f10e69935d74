import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DETECTORS } from '../src/detect/registry.js';
import { flowsentryTool, nfacctd, nfcapd, PORT, prepare, type Tool } from './e2e.js';
import { ensureDir, peakRssMiB, sleep, table, WORK } from './lib/common.js';

/**
 * Sustained ingest (`npm run bench -- sustained`): the end-to-end bench's 1,000,000-record NetFlow v9
 * load (31 records a datagram), looped by udpblast at a steady rate for BENCH_SUSTAIN_SECONDS (20 s:
 * 20 M records at 1 M/s), into flowsentry as `npm start` runs it (default configuration: collector,
 * embedded store and the detector scheduler), nfcapd and nfacctd with their defaults, one after the
 * other in the same run. Offered against stored, where the losses were (kernel socket, flowsentry's
 * packet queue, its spool), CPU seconds per million records stored (user + system of every process of
 * the tool, start-up and the drain after the load included), and the spool's peak on disk.
 *
 * Then flowsentry again at the target rate with every detector disabled (the scheduler's share), and
 * a hold: the highest rate of the ladder at which flowsentry stored everything, kept for
 * BENCH_SUSTAIN_HOLD seconds (60).
 */
const RECORDS_PER_LOOP = 1_000_000;
const RATES = (process.env.BENCH_SUSTAIN_RATES ?? '500000,1000000,1500000,2000000').split(',').map(Number);
const SECONDS = Number(process.env.BENCH_SUSTAIN_SECONDS ?? 20);
const TARGET_RATE = 1_000_000;
const TARGET_TRIALS = Number(process.env.BENCH_SUSTAIN_TRIALS ?? 3);
const HOLD_SECONDS = Number(process.env.BENCH_SUSTAIN_HOLD ?? 60);
const DIR = ensureDir(join(WORK, 'sustained'));
const CLOCK_TICKS = 100; // USER_HZ: /proc/<pid>/stat times are in 1/100 s on Linux (x86, arm).

const log = (message: string) => process.stderr.write(`[sustained] ${message}\n`);

const flowsentry = flowsentryTool('flowsentry');
const detectorsOff = flowsentryTool(
  'flowsentry, detectors disabled',
  `detection:\n  detectors:\n${DETECTORS.map((d) => `    ${d.id}: { enabled: false }\n`).join('')}`,
);
const PEERS: Tool[] = [nfcapd('nfcapd (defaults)', []), nfacctd('nfacctd (defaults)', false)];

interface Result {
  tool: string;
  rate: number;
  seconds: number;
  offered: number;
  achievedRate: number;
  stored: number;
  losses: Record<string, number>;
  cpuSeconds: number;
  spoolPeakMiB: number | null;
  rssMiB: number;
  detectorRuns: number | null;
}

/** utime + stime of a process, its threads included, in seconds (0 once it is gone). */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

function directoryBytes(dir: string): number {
  let total = 0;
  try {
    for (const name of readdirSync(dir)) {
      try {
        total += statSync(join(dir, name)).size;
      } catch {
        // Inserted and deleted between the listing and the stat.
      }
    }
  } catch {
    // Not created yet.
  }
  return total;
}

/** Runs udpblast at `pps` for `loops` passes of the load; resolves with the rate it reached. */
function blast(load: ReturnType<typeof prepare>, pps: number, loops: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(load.blast, [load.pcap, String(PORT), String(pps), String(loops)]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', reject);
    child.on('exit', () => resolve(Number(/= (\d+) pkt\/s/.exec(out)?.[1] ?? 0)));
  });
}

async function trial(
  tool: Tool,
  rate: number,
  seconds: number,
  load: ReturnType<typeof prepare>,
): Promise<Result> {
  const dir = join(DIR, tool.name.replace(/[^a-z0-9]+/gi, '-'));
  rmSync(dir, { recursive: true, force: true });
  ensureDir(dir);
  const running = await tool.start(dir);
  const loops = Math.max(1, Math.round((rate * seconds) / RECORDS_PER_LOOP));
  const offered = loops * RECORDS_PER_LOOP;
  const pps = Math.round((rate * load.packets) / RECORDS_PER_LOOP);
  const cpu = new Map<number, number>();
  const rss = new Map<number, number>();
  let spoolPeak = 0;
  const spoolDir = join(dir, 'data', 'spool');
  const sample = () => {
    for (const pid of running.pids()) {
      cpu.set(pid, Math.max(cpu.get(pid) ?? 0, cpuSeconds(pid)));
      rss.set(pid, Math.max(rss.get(pid) ?? 0, peakRssMiB(pid)));
    }
    if (running.api) spoolPeak = Math.max(spoolPeak, directoryBytes(spoolDir));
  };
  sample();
  const sampler = setInterval(sample, 200);
  const started = Date.now();
  log(`${tool.name}: ${offered.toLocaleString('en')} records at ${rate.toLocaleString('en')}/s`);
  const sentPps = await blast(load, pps, loops);
  let detectorRuns: number | null = null;
  if (running.api) {
    const { items } = await running.api<{ items: Array<{ last_run: { finished_at: string } | null }> }>(
      '/api/v1/detectors',
    );
    detectorRuns = items.filter((d) => d.last_run && Date.parse(d.last_run.finished_at) >= started).length;
  }
  sample();
  const stored = await running.finish(offered);
  clearInterval(sampler);
  const result: Result = {
    tool: tool.name,
    rate,
    seconds,
    offered,
    achievedRate: (sentPps * RECORDS_PER_LOOP) / load.packets,
    stored,
    losses: running.losses?.() ?? {},
    cpuSeconds: [...cpu.values()].reduce((a, b) => a + b, 0),
    spoolPeakMiB: running.api ? spoolPeak / 2 ** 20 : null,
    rssMiB: [...rss.values()].reduce((a, b) => a + b, 0),
    detectorRuns,
  };
  log(`${tool.name}: stored ${stored.toLocaleString('en')} of ${offered.toLocaleString('en')}`);
  rmSync(dir, { recursive: true, force: true });
  await sleep(500);
  return result;
}

function where(r: Result): string {
  const parts = Object.entries(r.losses)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k.replace('_', ' ')} ${n.toLocaleString('en')}`);
  return parts.length > 0 ? parts.join(', ') : r.stored < r.offered ? 'not located' : '';
}

function row(r: Result): Array<string | number> {
  const lost = r.offered - r.stored;
  return [
    r.tool,
    r.rate.toLocaleString('en'),
    `${r.seconds} s`,
    r.offered.toLocaleString('en'),
    Math.round(r.achievedRate).toLocaleString('en'),
    r.stored.toLocaleString('en'),
    lost > 0 ? `${lost.toLocaleString('en')} (${((100 * lost) / r.offered).toFixed(2)} %)` : '0',
    where(r),
    r.stored > 0 ? ((r.cpuSeconds * 1e6) / r.stored).toFixed(2) : '',
    r.spoolPeakMiB === null ? '' : r.spoolPeakMiB.toFixed(0),
    r.rssMiB,
    r.detectorRuns === null ? '' : String(r.detectorRuns),
  ];
}

export async function main(): Promise<string> {
  const load = prepare();
  const results: Result[] = [];
  for (const rate of RATES) {
    const trials = rate === TARGET_RATE ? TARGET_TRIALS : 1;
    for (let t = 0; t < trials; t++) results.push(await trial(flowsentry, rate, SECONDS, load));
    for (const peer of PEERS) results.push(await trial(peer, rate, SECONDS, load));
  }
  if (RATES.includes(TARGET_RATE)) results.push(await trial(detectorsOff, TARGET_RATE, SECONDS, load));
  const lossless = (rate: number) =>
    results.filter((r) => r.tool === 'flowsentry' && r.rate === rate).every((r) => r.stored === r.offered);
  const held = [...RATES].reverse().find(lossless);
  let hold: Result | null = null;
  if (held !== undefined && HOLD_SECONDS > 0) hold = await trial(flowsentry, held, HOLD_SECONDS, load);
  if (hold) results.push(hold);

  const target = results.filter(
    (r) => r.tool === 'flowsentry' && r.rate === TARGET_RATE && r.seconds === SECONDS,
  );
  const behind = RATES.filter((rate) => {
    const ours = Math.min(
      ...results.filter((r) => r.tool === 'flowsentry' && r.rate === rate).map((r) => r.stored),
    );
    return results.some((r) => r.rate === rate && r.tool.startsWith('nfcapd') && r.stored > ours);
  });
  const rmemMax = readFileSync('/proc/sys/net/core/rmem_max', 'utf8').trim();
  return [
    `### Sustained ingest: the 1 M-record NetFlow v9 load looped at a steady rate, net.core.rmem_max=${rmemMax}`,
    '',
    `Each row: one run at a steady offered rate for the time in "held" (udpblast looping the load; ${TARGET_TRIALS} of ` +
      'flowsentry at 1 M records/s), a fresh collector each. flowsentry is `npm start` with its default ' +
      'configuration on the embedded store, the detector scheduler running every detector at its default ' +
      'interval ("detector runs" counts the detectors whose last run finished during the load); the peers ' +
      'run with their defaults. "where lost": kernel = socket buffer overflows (datagrams, 31 records each), ' +
      "queue = flowsentry's packet ring full (datagrams), spool = records beyond the spool's bound. CPU s per M " +
      'stored: user + system time of all the processes of the tool (flowsentry: the service process with the ' +
      'embedded ClickHouse and the collector process) from start to stop, including start-up and draining the ' +
      "spool after the load, per million records stored. The sender spins on one of the 2 cores. The peers' " +
      "counts: nfdump -I over nfcapd's files, the sum of the FLOWS column of nfacctd's print plugin.",
    '',
    table(
      [
        'tool',
        'offered (records/s)',
        'held',
        'records offered',
        'sender reached (records/s)',
        'stored',
        'lost',
        'where lost',
        'CPU s per M stored',
        'spool peak MiB',
        'peak RSS MiB',
        'detector runs',
      ],
      results.map(row),
    ),
    '',
    `Target (20 M records at 1 M/s stored in full, default configuration, every run): ${
      target.length > 0 && target.every((r) => r.stored === r.offered)
        ? `met in ${target.length} of ${target.length} runs`
        : `not met (${target.filter((r) => r.stored === r.offered).length} of ${target.length} runs complete)`
    }. Rates at which nfcapd stored more than flowsentry: ${
      behind.length > 0 ? behind.map((r) => r.toLocaleString('en')).join(', ') : 'none'
    }. ${
      hold
        ? `Held for ${HOLD_SECONDS} s at ${hold.rate.toLocaleString('en')} records/s (the highest lossless rate of the ladder): ${hold.stored === hold.offered ? 'every record stored' : `${(hold.offered - hold.stored).toLocaleString('en')} lost`}.`
        : HOLD_SECONDS > 0
          ? 'No rate of the ladder was lossless: no hold run.'
          : 'No hold run (BENCH_SUSTAIN_HOLD=0).'
    }`,
    '',
    'Command: `npm run bench -- sustained` (BENCH_SUSTAIN_RATES, BENCH_SUSTAIN_SECONDS, BENCH_SUSTAIN_TRIALS and ' +
      'BENCH_SUSTAIN_HOLD change the ladder, the time at each rate, the runs at 1 M/s and the hold).',
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.stdout.write(`${await main()}\n`);
