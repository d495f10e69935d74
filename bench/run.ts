import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fromRoot, machine } from './lib/common.js';

/**
 * `npm run bench [-- decode e2e memory query detect sustained]`: runs the benchmarks (all by default), prints their
 * sections and writes each into bench/RESULTS.md between its own markers, leaving the sections of
 * benchmarks not run (and the hand-written summary) as they were. The end-to-end run under
 * BENCH_RMEM_MAX is its own section, so the stock-kernel and raised-cap tables live side by side.
 */
const BENCHES: Record<string, () => Promise<{ main(): Promise<string> }>> = {
  decode: () => import('./decode.js'),
  e2e: () => import('./e2e.js'),
  memory: () => import('./memory.js'),
  query: () => import('./query.js'),
  detect: () => import('./detect.js'),
  sustained: () => import('./sustained.js'),
};

const RESULTS = fromRoot('bench', 'RESULTS.md');

function sectionKey(name: string): string {
  const rmem = process.env.BENCH_RMEM_MAX;
  return name === 'e2e' && rmem ? `e2e-rmem-${rmem}` : name;
}

/** Puts `body` between the markers of `key`, replacing what was there, or appends it. */
export function placeSection(document: string, key: string, body: string): string {
  const begin = `<!-- bench:${key} begin -->`;
  const end = `<!-- bench:${key} end -->`;
  const block = `${begin}\n${body}\n${end}`;
  const from = document.indexOf(begin);
  const to = document.indexOf(end);
  if (from >= 0 && to > from) return document.slice(0, from) + block + document.slice(to + end.length);
  return `${document.trimEnd()}\n\n${block}\n`;
}

const HEADER = [
  '# Benchmark results',
  '',
  'Produced by `npm run bench` (which builds, then runs bench/run.ts; `npm run bench -- e2e` runs one and',
  'rewrites only its section). Peers are run by the same script in the same run on the same machine; each',
  'section names its run time, machine and command. The summary is written by hand from the sections.',
  '',
].join('\n');

async function run(): Promise<void> {
  const wanted = process.argv.slice(2).filter((a) => a in BENCHES);
  const names = wanted.length > 0 ? wanted : Object.keys(BENCHES);
  let document = existsSync(RESULTS) ? readFileSync(RESULTS, 'utf8') : HEADER;
  for (const name of names) {
    process.stderr.write(`== ${name}\n`);
    const started = new Date();
    const t = performance.now();
    const section = await (await BENCHES[name]!()).main();
    const seconds = ((performance.now() - t) / 1000).toFixed(0);
    const rmem = name === 'e2e' ? process.env.BENCH_RMEM_MAX : undefined;
    const host = `${machine()}${rmem ? ` (raised to ${rmem} for this run)` : ''}`;
    const body = `${section}\n\nRun ${started.toISOString()} on ${host}; ${seconds} s.`;
    process.stdout.write(`${body}\n\n`);
    document = placeSection(document, sectionKey(name), body);
    // Written after each benchmark, so a long run that fails later keeps what it measured.
    if (process.env.BENCH_NO_WRITE !== '1') writeFileSync(RESULTS, document);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await run();
