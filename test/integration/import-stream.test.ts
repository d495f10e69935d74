import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { writeUdpPcap } from '../../src/pcap/pcap.js';
import { openStore, queryRows } from '../../src/storage/clickhouse.js';
import { CLI } from '../support/service.js';
import { tempDir } from '../support/temp.js';
import { loadPayloads, loadSequences } from '../support/vendor-fixtures.js';

/**
 * `flowsentry import` of a capture far larger than the memory it may use: 512 MiB of pcap (20,000
 * NetFlow v5 datagrams of 30 records among 60 KB datagrams to another port), a 16 MiB spool and
 * 10,000-row chunks. The child's memory is sampled from inside it (a preloaded module reading
 * process.memoryUsage() every 5 ms; peak RSS from the kernel at exit).
 */
const scratch = tempDir();
afterAll(() => scratch.remove());

const NETFLOW_DATAGRAMS = 20_000;
const FILLER_BYTES = 60_000;
const CAPTURE_BYTES = 512 * 1024 * 1024;
/**
 * JS heap plus Buffers the import may hold, whatever the capture size: ~38 MiB of heap is the CLI's
 * code and libraries; the rest is the 1 MiB read buffer, one 10,000-row chunk and garbage not yet
 * collected.
 */
const JS_MEMORY_BOUND = 128 * 1024 * 1024;

const SAMPLER = `
import { writeFileSync } from 'node:fs';
const peak = { heapUsed: 0, external: 0, arrayBuffers: 0, js: 0 };
const sample = () => {
  const m = process.memoryUsage();
  peak.heapUsed = Math.max(peak.heapUsed, m.heapUsed);
  peak.external = Math.max(peak.external, m.external);
  peak.arrayBuffers = Math.max(peak.arrayBuffers, m.arrayBuffers);
  peak.js = Math.max(peak.js, m.heapUsed + m.external);
};
setInterval(sample, 5).unref();
process.on('exit', () => {
  sample();
  writeFileSync(process.env.MEMORY_REPORT, JSON.stringify({ ...peak, maxRssBytes: process.resourceUsage().maxRSS * 1024 }));
});
`;

/** Writes the capture a batch of datagrams at a time, so this process never holds it either. */
function writeCapture(path: string, baseMs: number): number {
  const payload = loadPayloads(loadSequences().find((s) => s.name === 'netflow5_mikrotik')!)[0]!;
  const filler = new Uint8Array(FILLER_BYTES).fill(0x5a);
  const fd = openSync(path, 'w');
  let written = 0;
  let netflow = 0;
  let batch = 0;
  while (written < CAPTURE_BYTES || netflow < NETFLOW_DATAGRAMS) {
    const datagrams = [];
    for (let i = 0; i < 200 && netflow < NETFLOW_DATAGRAMS; i++, netflow++) {
      datagrams.push({
        timeMs: baseMs + netflow,
        srcAddress: `198.51.100.${(netflow % 50) + 1}`,
        dstAddress: '192.0.2.1',
        srcPort: 50000,
        dstPort: 2055,
        payload,
      });
    }
    for (let i = 0; i < 20; i++) {
      datagrams.push({
        timeMs: baseMs + netflow,
        srcAddress: '198.51.100.200',
        dstAddress: '192.0.2.1',
        srcPort: 40000,
        dstPort: 9999,
        payload: filler,
      });
    }
    const pcap = writeUdpPcap(datagrams);
    // One file header, then records only.
    const body = batch++ === 0 ? pcap : pcap.subarray(24);
    writeSync(fd, body);
    written += body.byteLength;
  }
  closeSync(fd);
  return netflow;
}

describe('flowsentry import of a capture larger than its memory bound', () => {
  test('every record is stored and the JS memory stays far below the capture size', async () => {
    const capture = join(scratch.path, 'big.pcap');
    const baseMs = Math.floor(Date.now() / 1000) * 1000 - 3_600_000;
    const sent = writeCapture(capture, baseMs);
    const size = statSync(capture).size;
    expect(size).toBeGreaterThanOrEqual(CAPTURE_BYTES);
    const config = join(scratch.path, 'import.yaml');
    writeFileSync(config, 'storage:\n  batch:\n    maxRows: 10000\n  spool:\n    maxBytes: 16777216\n');
    const dataDir = join(scratch.path, 'data');
    const report = join(scratch.path, 'memory.json');
    const started = performance.now();
    const child = spawn(
      process.execPath,
      [
        '--import',
        `data:text/javascript,${encodeURIComponent(SAMPLER)}`,
        CLI,
        'import',
        capture,
        '--port',
        '2055',
      ],
      {
        env: {
          ...process.env,
          FLOWSENTRY_LOG_LEVEL: 'warn',
          FLOWSENTRY_CONFIG: config,
          FLOWSENTRY_DATA_DIR: dataDir,
          MEMORY_REPORT: report,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    const seconds = (performance.now() - started) / 1000;
    const memory = JSON.parse(readFileSync(report, 'utf8')) as Record<string, number>;
    console.log(
      `import: ${(size / 1048576).toFixed(0)} MiB capture, ${stdout.trim()} in ${seconds.toFixed(1)} s; ` +
        `peak heapUsed+external ${(memory.js! / 1048576).toFixed(1)} MiB (heap ${(memory.heapUsed! / 1048576).toFixed(1)}), peak RSS ${(memory.maxRssBytes! / 1048576).toFixed(0)} MiB`,
    );
    expect(code, stderr).toBe(0);
    const result = JSON.parse(stdout) as Record<string, number>;
    expect(result).toMatchObject({
      datagrams: sent,
      records: sent * 30,
      stored: sent * 30,
      dropped: 0,
      decode_errors: 0,
    });
    // Not a terminal: no progress line.
    expect(stderr).not.toContain('\r');

    expect(memory.js).toBeLessThan(JS_MEMORY_BOUND);
    expect(memory.js).toBeLessThan(size / 4);

    const store = await openStore(
      { url: '', user: 'default', password: '', database: 'flowsentry' },
      dataDir,
    );
    try {
      const [row] = await queryRows<{ n: number; exporters: number }>(
        store,
        'SELECT count() AS n, uniqExact(exporter_address) AS exporters FROM flows',
      );
      expect(row).toEqual({ n: sent * 30, exporters: 50 });
    } finally {
      await store.close();
    }
  }, 300_000);

  test('on a terminal, a progress line on stderr', () => {
    const capture = join(scratch.path, 'big.pcap');
    const dataDir = join(scratch.path, 'data-tty');
    const quote = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;
    // script(1) runs the import on a pseudo-terminal.
    const run = spawnSync(
      'script',
      [
        '-qec',
        [process.execPath, CLI, 'import', capture, '--port', '2055'].map(quote).join(' '),
        '/dev/null',
      ],
      {
        env: { ...process.env, FLOWSENTRY_LOG_LEVEL: 'warn', FLOWSENTRY_DATA_DIR: dataDir },
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    expect(run.status, run.stdout).toBe(0);
    const lines = [
      ...run.stdout.matchAll(/import: (\d+\.\d) MiB of (\d+\.\d) MiB \((\d+) %\), (\d+) datagrams/g),
    ];
    expect(lines.length).toBeGreaterThan(0);
    const size = statSync(capture).size / 1048576;
    for (const [, read, total, percent] of lines) {
      expect(Number(total)).toBeCloseTo(size, 1);
      expect(Number(read)).toBeLessThanOrEqual(Number(total));
      expect(Number(percent)).toBe(Math.floor((Number(read) / Number(total)) * 100));
    }
    expect(run.stdout).toContain('"stored":600000');
  }, 300_000);
});
