import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import type { StreamSnapshot } from '../../src/decoder/index.js';
import { type ExportField, ExportPacketBuilder, encodeRecord } from '../../src/export/packet-builder.js';
import { CLI, type RunningService, sendDatagrams, sleep, startService, waitFor } from '../support/service.js';
import { tempDir } from '../support/temp.js';

const scratch = tempDir();
const running: RunningService[] = [];
afterAll(async () => {
  await Promise.all(running.map((s) => s.stop()));
  scratch.remove();
});

async function service(
  name: string,
  env: Record<string, string> = {},
  wrap?: string[],
): Promise<RunningService> {
  const s = await startService({ dataDir: join(scratch.path, name), env, ...(wrap ? { wrap } : {}) });
  running.push(s);
  return s;
}

const F = (id: number, length: number): ExportField => ({ id, length });
const FIELDS = [F(8, 4), F(12, 4), F(7, 2), F(11, 2), F(4, 1), F(1, 4), F(2, 4), F(152, 8), F(153, 8)];
const NOW = Date.now();
const record = (src: string, bytes: number) =>
  encodeRecord(FIELDS, [src, '10.9.9.9', 40000, 22, 6, bytes, 3, NOW - 5_000, NOW - 1_000]);
const SECS = Math.floor(NOW / 1000);

/** An item of GET /api/v1/exporters. */
type Stream = StreamSnapshot;

async function streamOf(s: RunningService, address: string): Promise<Stream | undefined> {
  const { body } = await s.get<{ items: Stream[] }>('/api/v1/exporters');
  return body.items.find((i) => i.address === address && i.version !== 0);
}

const summary = (s: RunningService, exporter: string) =>
  s.get<{ flows: number; bytes: number; packets: number }>(
    `/api/v1/flows/summary?from=${new Date(NOW - 3_600_000).toISOString()}&to=${new Date(NOW + 3_600_000).toISOString()}&exporter=${exporter}`,
  );

/** The nice value the kernel reports for a thread (field 19 of /proc/<tid>/stat). */
function kernelNice(tid: number): number {
  const stat = readFileSync(`/proc/${tid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

/** Whether this process may raise priorities (CAP_SYS_NICE, bit 23 of the effective set). */
const MAY_RAISE_PRIORITY = (() => {
  const caps = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  return caps !== undefined && (BigInt(`0x${caps}`) & (1n << 23n)) !== 0n;
})();
const HAS_SETPRIV = spawnSync('setpriv', ['--version']).status === 0;

/** A configuration file asking for the receive thread at nice -10. */
function raisedReceiveThread(): string {
  const file = join(scratch.path, 'receive-nice.yaml');
  writeFileSync(file, 'collector:\n  receiveNice: -10\n');
  return file;
}

interface ReceiveThread {
  tid: number;
  requested_nice: number;
  nice: number;
  error?: string;
}

describe('flowsentry serve', () => {
  test('a bad configuration stops start-up with a message naming the variable', () => {
    const result = spawnSync(process.execPath, [CLI, 'serve'], {
      env: {
        ...process.env,
        FLOWSENTRY_DATA_DIR: join(scratch.path, 'bad'),
        FLOWSENTRY_LISTEN_UDP: '0.0.0.0:2055,nonsense',
      },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/FLOWSENTRY_LISTEN_UDP \(collector\.listen\[1\]\): expected host:port/);
  });

  test('templates survive a restart; data that arrives before its template is decoded when it comes', async () => {
    const first = await service('restart');
    const exporter = '127.0.3.1';
    // Data first, then the template: held, then decoded.
    await sendDatagrams(
      [
        new ExportPacketBuilder(9, 11)
          .data(300, [record('10.1.1.1', 111)])
          .build({ exportSecs: SECS, sequence: 0 }),
      ],
      first.netflowPort,
      exporter,
    );
    await sendDatagrams(
      [
        new ExportPacketBuilder(9, 11)
          .templates([{ id: 300, fields: FIELDS }])
          .build({ exportSecs: SECS, sequence: 1 }),
      ],
      first.netflowPort,
      exporter,
    );
    await waitFor(
      async () => ((await summary(first, exporter)).body.flows === 1 ? true : undefined),
      10_000,
      'the held record',
    );
    expect((await summary(first, exporter)).body).toEqual({ flows: 1, bytes: 111, packets: 3 });
    expect(await streamOf(first, exporter)).toMatchObject({
      records: 1,
      missing_templates: 1,
      templates: 1,
      pending_decoded_sets: 1,
      pending_dropped_sets: 0,
    });
    expect(await first.stop()).toBe(0);

    // After a restart the exporter sends data only: the persisted template decodes it.
    const second = await service('restart');
    await sendDatagrams(
      [
        new ExportPacketBuilder(9, 11)
          .data(300, [record('10.2.2.2', 222)])
          .build({ exportSecs: SECS, sequence: 2 }),
      ],
      second.netflowPort,
      exporter,
    );
    await waitFor(
      async () => ((await summary(second, exporter)).body.flows === 2 ? true : undefined),
      10_000,
      'the second record',
    );
    expect((await summary(second, exporter)).body).toEqual({ flows: 2, bytes: 333, packets: 6 });
    expect(await streamOf(second, exporter)).toMatchObject({ records: 1, missing_templates: 0 });
  });

  test('exporters outside the allowlist are counted and dropped; malformed datagrams do not disturb others', async () => {
    const s = await service('allowlist', { FLOWSENTRY_ALLOWED_EXPORTERS: '127.0.4.0/24' });
    const packet = (src: string, bytes: number) =>
      new ExportPacketBuilder(10, 1)
        .templates([{ id: 256, fields: FIELDS }])
        .data(256, [record(src, bytes)])
        .build({ exportSecs: SECS, sequence: 0 });
    await sendDatagrams([packet('10.0.0.1', 500)], s.ipfixPort, '127.0.5.1');
    const garbage = [
      Uint8Array.from([0, 10, 0, 200, 1, 2, 3]),
      Uint8Array.from([0, 9]),
      new Uint8Array(1400).fill(0xff),
      packet('10.0.0.9', 9).subarray(0, 30),
    ];
    await sendDatagrams([...garbage, packet('10.0.0.2', 700)], s.ipfixPort, '127.0.4.7');
    await waitFor(
      async () => ((await summary(s, '127.0.4.7')).body.flows === 1 ? true : undefined),
      10_000,
      'the allowed record',
    );
    expect((await summary(s, '127.0.4.7')).body).toEqual({ flows: 1, bytes: 700, packets: 3 });
    expect((await summary(s, '127.0.5.1')).body).toEqual({ flows: 0, bytes: 0, packets: 0 });
    const collector = await s.get<{
      decoder: Record<string, number>;
      storage: {
        writer: { insertedRows: number; insertFailures: number; queuedFiles: number };
        spoolBytes: number;
      };
    }>('/api/v1/collector');
    expect(collector.body.storage).toMatchObject({
      writer: { insertedRows: 1, insertFailures: 0, queuedFiles: 0 },
      spoolBytes: 0,
    });
    expect(collector.body.decoder).toMatchObject({ exporter_not_allowed: 1, records: 1 });
    // 7 and 2 bytes: too short; 0xffff: no such version; cut at 30 bytes: shorter than its IPFIX length.
    expect(collector.body.decoder).toMatchObject({
      packet_too_short: 2,
      unknown_version: 1,
      ipfix_bad_length: 1,
    });
    const { body } = await s.get<{ items: Stream[] }>('/api/v1/exporters');
    expect(body.items.filter((i) => i.address === '127.0.4.7').reduce((n, i) => n + i.decode_errors, 0)).toBe(
      4,
    );

    const metrics = await s.get<string>('/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/^flowsentry_decoder_records_total 1$/m);
    expect(metrics.body).toMatch(/^flowsentry_decoder_errors_total\{reason="packet_too_short"\} 2$/m);
    expect(metrics.body).toMatch(
      new RegExp(
        `^flowsentry_collector_packets_received_total\\{listener="127.0.0.1:${s.ipfixPort}"\\} 6$`,
        'm',
      ),
    );
    expect(metrics.body).toMatch(
      /^flowsentry_collector_kernel_dropped_packets_total\{listener="[^"]+"\} 0$/m,
    );
    expect(metrics.body).toMatch(/^flowsentry_storage_inserted_rows_total 1$/m);
  });

  test('by default the receive thread is left at nice 0 and the API says nothing was asked', async () => {
    const s = await service('priority-default');
    const { body } = await s.get<{ receive_thread: ReceiveThread | null }>('/api/v1/collector');
    expect(body.receive_thread).toBeNull();
    await s.stop();
  });

  test('by default the socket comes first, the decoders next and the store last, in every thread', async () => {
    const s = await service('priority-order');
    const pid = s.process.pid!;
    // The collector is the service's child process; the service re-lowers new threads every 2 s.
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    expect(children).toHaveLength(1);
    const collectorPid = children[0]!;
    type Threads = { receive: { tid: number; nice: number }; decoders: Array<{ tid: number; nice: number }> };
    const { body } = await s.get<{ threads: Threads }>('/api/v1/collector');
    const { receive, decoders } = body.threads;
    const collectorTids = readdirSync(`/proc/${collectorPid}/task`).map(Number);
    expect(collectorTids).toContain(receive.tid);
    expect(kernelNice(receive.tid)).toBe(0);
    expect(decoders.length).toBeGreaterThan(0);
    for (const d of decoders) {
      expect(collectorTids).toContain(d.tid);
      expect(kernelNice(d.tid)).toBe(d.nice);
      expect(d.nice).toBeGreaterThan(0);
    }
    const decoderNice = Math.max(...decoders.map((d) => d.nice));
    // Every thread of the service process (store, writer, detectors, API, and the embedded
    // ClickHouse's pools, which it names) runs below the decoders, once the 2 s re-check has passed.
    await sleep(2_500);
    const serviceThreads = readdirSync(`/proc/${pid}/task`).map((tid) => ({
      name: readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(),
      nice: kernelNice(Number(tid)),
    }));
    expect(serviceThreads.filter((t) => t.nice <= decoderNice)).toEqual([]);
    expect(serviceThreads.length).toBeGreaterThan(10);
    expect(
      serviceThreads.some((t) =>
        /^(BgSchPool|QueryPipelineEx|MergeTreeBG|BgMoveSchPool|SystemLogFlush|TCPHandler|ThreadPool|Background|GlobalPool)/i.test(
          t.name,
        ),
      ),
    ).toBe(true);
    await s.stop();
  });

  test('the receive thread runs at collector.receiveNice, as the kernel reports it', async () => {
    const s = await service('priority', { FLOWSENTRY_CONFIG: raisedReceiveThread() });
    const { body } = await s.get<{ receive_thread: ReceiveThread }>('/api/v1/collector');
    const thread = body.receive_thread;
    expect(thread.requested_nice).toBe(-10);
    expect(kernelNice(thread.tid)).toBe(thread.nice);
    const metrics = await s.get<string>('/metrics');
    expect(metrics.body).toMatch(
      new RegExp(`^flowsentry_collector_receive_thread_nice ${thread.nice}$`, 'm'),
    );
    if (MAY_RAISE_PRIORITY) {
      expect(thread.nice).toBe(-10);
      expect(thread.error).toBeUndefined();
    } else {
      expect(thread.error).toMatch(/EACCES|EPERM/);
    }
    await s.stop();
  });

  test.runIf(MAY_RAISE_PRIORITY && HAS_SETPRIV)(
    'without CAP_SYS_NICE start-up goes on at nice 0, warns and reports why',
    async () => {
      const s = await service('unprivileged', { FLOWSENTRY_CONFIG: raisedReceiveThread() }, [
        'setpriv',
        '--bounding-set=-sys_nice',
        '--inh-caps=-sys_nice',
      ]);
      const { body } = await s.get<{ receive_thread: ReceiveThread }>('/api/v1/collector');
      const thread = body.receive_thread;
      expect(thread).toMatchObject({ requested_nice: -10, nice: 0 });
      expect(thread.error).toMatch(/EACCES|EPERM/);
      expect(kernelNice(thread.tid)).toBe(0);
      expect(s.output()).toContain('collector.receiveNice not applied');
      // It still collects: a v9 datagram is decoded and stored.
      await sendDatagrams(
        [
          new ExportPacketBuilder(9, 1)
            .templates([{ id: 256, fields: FIELDS }])
            .data(256, [record('10.1.1.1', 1234)])
            .build({ exportSecs: SECS, sequence: 0 }),
        ],
        s.netflowPort,
        '127.0.3.9',
      );
      await waitFor(
        async () => ((await summary(s, '127.0.3.9')).body.flows === 1 ? true : undefined),
        10_000,
        'the record',
      );
      expect((await summary(s, '127.0.3.9')).body).toEqual({ flows: 1, bytes: 1234, packets: 3 });
      await s.stop();
    },
  );

  test('the API answers bad requests with 4xx and a message', async () => {
    const s = running.find((r) => r.process.exitCode === null) ?? (await service('api'));
    const bad = await s.get<{ error: string; message: string }>(
      '/api/v1/flows/summary?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z',
    );
    expect(bad).toEqual({
      status: 400,
      body: { error: 'bad_request', message: 'to: `from` must be before `to`' },
    });
    const missing = await s.get<{ message: string }>('/api/v1/flows/summary?to=2026-01-01T00:00:00Z');
    expect(missing.status).toBe(400);
    expect(missing.body.message).toMatch(/^from: /);
    const exporter = await s.get<{ message: string }>(
      '/api/v1/flows/summary?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&exporter=300.1.1.1',
    );
    expect(exporter.status).toBe(400);
    expect(exporter.body.message).toMatch(/exporter: expected an IPv4 or IPv6 address/);
    const notFound = await s.get('/api/v1/nothing');
    expect(notFound).toEqual({
      status: 404,
      body: { error: 'not_found', message: 'no route GET /api/v1/nothing' },
    });
    const health = await s.get<Record<string, unknown>>('/healthz');
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'ok', storage: 'ok', storage_engine: 'chdb' });
  });
});
