import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fromRoot, machine } from './lib/common.js';

/**
 * `npm run bench [-- decode e2e memory query]`: runs the benchmarks (all by default) and writes their
 * sections, with the machine and the commands, to bench/RESULTS.md.
 */
const BENCHES: Record<string, () => Promise<{ main(): Promise<string> }>> = {
  decode: () => import('./decode.js'),
  e2e: () => import('./e2e.js'),
  memory: () => import('./memory.js'),
  query: () => import('./query.js'),
};

async function run(): Promise<void> {
  const wanted = process.argv.slice(2).filter((a) => a in BENCHES);
  const names = wanted.length > 0 ? wanted : Object.keys(BENCHES);
  const started = new Date();
  const sections: string[] = [];
  for (const name of names) {
    process.stderr.write(`== ${name}\n`);
    const t = performance.now();
    const section = await (await BENCHES[name]!()).main();
    sections.push(`${section}\n\n(${((performance.now() - t) / 1000).toFixed(0)} s)`);
    process.stdout.write(`${section}\n\n`);
  }
  const text = [
    '# Benchmark results',
    '',
    `Run ${started.toISOString()} on ${machine()}.`,
    '',
    `Produced by \`npm run bench${wanted.length > 0 ? ` -- ${names.join(' ')}` : ''}\` (which builds, then runs bench/run.ts). ` +
      'Peers are run by the same script in the same run on the same machine.',
    '',
    ...sections.flatMap((s) => [s, '']),
  ].join('\n');
  if (process.env.BENCH_NO_WRITE !== '1') writeFileSync(fromRoot('bench', 'RESULTS.md'), text);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await run();
