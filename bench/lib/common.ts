import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { CLI, REPO_ROOT } from '../../test/support/service.js';

/** Repository root (bench/ is compiled to .bench/build/bench/). */
export const ROOT = REPO_ROOT;
export const WORK = join(ROOT, '.bench');
export { CLI };

export function ensureDir(path: string): string {
  mkdirSync(path, { recursive: true });
  return path;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Peak resident memory (VmHWM) of a process in MiB, or 0 when it is gone. */
export function peakRssMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : 0;
  } catch {
    return 0;
  }
}

export function which(command: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${command} || ls /usr/sbin/${command} 2>/dev/null`], {
    encoding: 'utf8',
  });
  const path = r.stdout.trim().split('\n')[0];
  return path ? path : null;
}

/** Installs Debian packages when their command is missing (the bench runs as root on the CI kind). */
export function ensureDebianTools(tools: Array<{ command: string; pkg: string }>): void {
  const missing = tools.filter((t) => which(t.command) === null).map((t) => t.pkg);
  if (missing.length === 0) return;
  const sudo = process.getuid?.() === 0 ? [] : ['sudo'];
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () =>
    spawnSync(
      sudo[0] ?? 'apt-get',
      [...(sudo.length ? ['apt-get'] : []), 'install', '-y', '-q', ...missing],
      { env, stdio: 'inherit' },
    );
  if (install().status !== 0) {
    spawnSync(sudo[0] ?? 'apt-get', [...(sudo.length ? ['apt-get'] : []), 'update', '-q'], {
      env,
      stdio: 'inherit',
    });
    if (install().status !== 0) throw new Error(`cannot install ${missing.join(' ')}`);
  }
}

/** The machine the numbers were taken on, for RESULTS.md. */
export function machine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
  let rmemMax = 'unknown';
  try {
    rmemMax = readFileSync('/proc/sys/net/core/rmem_max', 'utf8').trim();
  } catch {
    // Not Linux.
  }
  return `${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${kernel}, Node ${process.version}, net.core.rmem_max=${rmemMax}`;
}

/** Renders rows as a Markdown table. */
export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const line = (cells: Array<string | number>) => `| ${cells.map(String).join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

export const fromRoot = (...parts: string[]) => resolve(ROOT, ...parts);
