import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExportField } from '../../src/export/packet-builder.js';

/**
 * The repository root: the nearest folder above this module with package.json and migrations/, so the
 * answer is the same from test/support/ and from the benchmarks' compiled copy under .bench/build/.
 */
export const REPO_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'migrations'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('repository root not found');
    dir = parent;
  }
  return dir;
})();

/** The built CLI (`npm test` builds first: see the pretest script). */
export const CLI = join(REPO_ROOT, 'dist', 'cli.js');

export async function freeUdpPort(): Promise<number> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  const { port } = socket.address();
  await new Promise<void>((r) => socket.close(() => r()));
  return port;
}

export async function freeTcpPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const address = server.address();
  await new Promise<void>((r) => server.close(() => r()));
  return typeof address === 'object' && address ? address.port : 0;
}

export interface RunningService {
  readonly dataDir: string;
  readonly http: string;
  /** UDP port of the first listener (NetFlow) and of the second (IPFIX). */
  readonly netflowPort: number;
  readonly ipfixPort: number;
  readonly process: ChildProcess;
  output(): string;
  get<T = unknown>(path: string): Promise<{ status: number; body: T }>;
  /** SIGTERM and wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts `flowsentry serve` from dist/ with its own data directory and free ports, and waits until
 * /healthz answers 200.
 */
/**
 * Waits until a started `flowsentry serve` answers 200 on /healthz; fails with its output when it
 * exits first or does not get there in time (and kills it then).
 */
export async function waitUntilHealthy(
  child: ChildProcess,
  http: string,
  output: () => string,
  timeoutMs = 90_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`flowsentry exited with ${child.exitCode}:\n${output()}`);
    try {
      if ((await fetch(`${http}/healthz`)).status === 200) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`flowsentry did not become healthy:\n${output()}`);
    }
    await sleep(100);
  }
}

export async function startService(options: {
  dataDir: string;
  env?: Record<string, string>;
  /** A command that execs the service (e.g. setpriv with capabilities dropped). */
  wrap?: string[];
  /** Address the API listens on (default 127.0.0.1); requests still go to 127.0.0.1. */
  httpHost?: string;
}): Promise<RunningService> {
  const [netflowPort, ipfixPort, httpPort] = [await freeUdpPort(), await freeUdpPort(), await freeTcpPort()];
  const http = `http://127.0.0.1:${httpPort}`;
  let output = '';
  const [command, ...prefix] = [...(options.wrap ?? []), process.execPath];
  const child = spawn(command!, [...prefix, CLI, 'serve'], {
    env: {
      ...process.env,
      FLOWSENTRY_DATA_DIR: options.dataDir,
      FLOWSENTRY_LISTEN_UDP: `127.0.0.1:${netflowPort},127.0.0.1:${ipfixPort}`,
      FLOWSENTRY_LISTEN_HTTP: `${options.httpHost ?? '127.0.0.1'}:${httpPort}`,
      FLOWSENTRY_LOG_LEVEL: 'info',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const get = async <T>(path: string) => {
    const response = await fetch(`${http}${path}`);
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // Not JSON (e.g. /metrics).
    }
    return { status: response.status, body: body as T };
  };
  await waitUntilHealthy(child, http, () => output);
  return {
    dataDir: options.dataDir,
    http,
    netflowPort,
    ipfixPort,
    process: child,
    output: () => output,
    get,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Sends datagrams in order from `fromAddress` (any 127.0.0.0/8 address is local on Linux). */
export async function sendDatagrams(
  payloads: readonly Uint8Array[],
  port: number,
  fromAddress = '127.0.0.1',
  host = '127.0.0.1',
): Promise<void> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolveBind, reject) => {
    socket.once('error', reject);
    socket.bind(0, fromAddress, () => resolveBind());
  });
  for (const payload of payloads) {
    await new Promise<void>((r, reject) => socket.send(payload, port, host, (e) => (e ? reject(e) : r())));
  }
  await new Promise<void>((r) => socket.close(() => r()));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(100);
  }
}

export const fixturePath = (...parts: string[]) => join(REPO_ROOT, 'test', 'fixtures', ...parts);

const F = (id: number, length: number): ExportField => ({ id, length });

/**
 * A flow template the service tests export (v9 or IPFIX): src, dst, src port, dst port, protocol,
 * TCP flags, bytes, packets, flow start and end (absolute ms).
 */
export const FLOW_FIELDS: readonly ExportField[] = [
  F(8, 4),
  F(12, 4),
  F(7, 2),
  F(11, 2),
  F(4, 1),
  F(6, 1),
  F(1, 4),
  F(2, 4),
  F(152, 8),
  F(153, 8),
];
