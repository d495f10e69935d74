import dgram from 'node:dgram';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ExportPacketBuilder, encodeRecord } from '../../src/export/packet-builder.js';
import {
  FLOW_FIELDS as FIELDS,
  freeUdpPort,
  REPO_ROOT,
  type RunningService,
  sendDatagrams,
  startService,
  waitFor,
} from '../support/service.js';
import { tempDir } from '../support/temp.js';

/**
 * GET /metrics of a running `flowsentry serve`, after real IPFIX datagrams over UDP, a detector run
 * through the API and SIEM messages to a real UDP socket: every component's metrics are scraped and
 * their values compared with what was sent and what the other endpoints report.
 */

const scratch = tempDir();
let s: RunningService;
const syslog = dgram.createSocket('udp4');
const received: string[] = [];
afterAll(async () => {
  await s?.stop();
  syslog.close();
  scratch.remove();
});

const NOW = Date.now();
const SECS = Math.floor(NOW / 1000);
const EXPORTER = '127.0.7.1';
const PORTS_PER_PACKET = 10;
const PACKETS = 4;
// A vertical port scan: 40 SYN-only probes from 10.0.0.66 to 40 ports of 10.0.0.5.
const packets = Array.from({ length: PACKETS }, (_, p) =>
  new ExportPacketBuilder(10, 3)
    .templates(p === 0 ? [{ id: 256, fields: FIELDS }] : [])
    .data(
      256,
      Array.from({ length: PORTS_PER_PACKET }, (_, i) =>
        encodeRecord(FIELDS, [
          '10.0.0.66',
          '10.0.0.5',
          40_000 + i,
          1000 + p * PORTS_PER_PACKET + i,
          6,
          0x02,
          60,
          1,
          NOW - 90_000 + i * 100,
          NOW - 90_000 + i * 100,
        ]),
      ),
    )
    .build({ exportSecs: SECS, sequence: p * PORTS_PER_PACKET }),
);
const RECORDS = PACKETS * PORTS_PER_PACKET;

/** The value of one sample in Prometheus text (undefined when the series is absent). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]),
    );
    if (
      Object.entries(labels).every(([k, v]) => have[k] === v) &&
      Object.keys(have).length === Object.keys(labels).length
    )
      return Number(m[3]);
  }
  return undefined;
}

const scrape = async () => {
  const r = await s.get<string>('/metrics');
  expect(r.status).toBe(200);
  return r.body;
};

beforeAll(async () => {
  const port = await freeUdpPort();
  await new Promise<void>((r) => syslog.bind(port, '127.0.0.1', () => r()));
  syslog.on('message', (m) => received.push(m.toString()));
  s = await startService({
    dataDir: join(scratch.path, 'metrics'),
    env: { FLOWSENTRY_SYSLOG_URL: `udp://127.0.0.1:${port}`, FLOWSENTRY_SYSLOG_FORMAT: 'json' },
  });
  await sendDatagrams(packets, s.ipfixPort, EXPORTER);
  await waitFor(
    async () =>
      (sample(await scrape(), 'flowsentry_storage_inserted_rows_total') ?? 0) >= RECORDS ? true : undefined,
    20_000,
    'the records in the store',
  );
}, 120_000);

describe('GET /metrics of a running service', () => {
  test('collector and decoder: datagrams, records and templates per exporter equal what was sent', async () => {
    const text = await scrape();
    const exporter = { exporter: EXPORTER, version: '10' };
    expect(sample(text, 'flowsentry_decoder_exporter_records_total', exporter)).toBe(RECORDS);
    expect(sample(text, 'flowsentry_decoder_exporter_packets_total', exporter)).toBe(PACKETS);
    expect(sample(text, 'flowsentry_decoder_exporter_errors_total', exporter)).toBe(0);
    expect(sample(text, 'flowsentry_decoder_exporter_templates', exporter)).toBe(1);
    expect(sample(text, 'flowsentry_decoder_sequence_lost_records_total', { ...exporter, domain: '3' })).toBe(
      0,
    );
    expect(sample(text, 'flowsentry_decoder_records_total')).toBe(RECORDS);
    expect(
      sample(text, 'flowsentry_collector_packets_received_total', { listener: `127.0.0.1:${s.ipfixPort}` }),
    ).toBe(PACKETS);
    expect(sample(text, 'flowsentry_collector_up')).toBe(1);
    expect(sample(text, 'flowsentry_collector_queue_capacity_bytes')).toBe(64 * 1024 * 1024);
    expect(sample(text, 'flowsentry_collector_spool_dropped_records_total')).toBe(0);
  });

  test('storage: inserted rows equal the records; one latency observation per insert batch', async () => {
    const text = await scrape();
    expect(sample(text, 'flowsentry_storage_inserted_rows_total')).toBe(RECORDS);
    const batches = sample(text, 'flowsentry_storage_insert_batches_total')!;
    expect(batches).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'flowsentry_storage_insert_seconds_count')).toBe(batches);
    expect(sample(text, 'flowsentry_storage_insert_failures_total')).toBe(0);
    expect(sample(text, 'flowsentry_storage_queued_rows')).toBe(0);
    const { body } = await s.get<{ storage: { writer: { insertedBatches: number } } }>('/api/v1/collector');
    expect(body.storage.writer.insertedBatches).toBe(batches);
  });

  test('detectors, SIEM and API: a detector run through the API is counted as it was reported', async () => {
    const before = await scrape();
    const runs = (t: string) =>
      sample(t, 'flowsentry_detector_runs_total', { detector: 'vertical-port-scan', status: 'ok' }) ?? 0;
    const created = (t: string) =>
      sample(t, 'flowsentry_detector_findings_total', {
        detector: 'vertical-port-scan',
        outcome: 'created',
      }) ?? 0;
    const response = await fetch(`${s.http}/api/v1/detections/run`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        from: new Date(NOW - 600_000).toISOString(),
        to: new Date(NOW).toISOString(),
        detectors: ['vertical-port-scan'],
      }),
    });
    expect(response.status).toBe(200);
    const run = (await response.json()) as { windows: number; findings_created: number };
    expect(run.findings_created).toBe(1);
    const after = await scrape();
    expect(runs(after) - runs(before)).toBe(run.windows);
    expect(created(after) - created(before)).toBe(run.findings_created);
    expect(sample(after, 'flowsentry_detector_errors_total', { detector: 'vertical-port-scan' })).toBe(0);
    expect(
      sample(after, 'flowsentry_detector_run_duration_seconds_count', { detector: 'vertical-port-scan' }),
    ).toBe(runs(after));
    // Every configured detector has its series, run or not.
    expect(sample(after, 'flowsentry_detector_runs_total', { detector: 'beaconing', status: 'error' })).toBe(
      0,
    );
    expect(
      sample(after, 'flowsentry_api_requests_total', {
        route: '/api/v1/detections/run',
        method: 'POST',
        status: '200',
      }),
    ).toBe(1);
    expect(
      sample(after, 'flowsentry_api_request_duration_seconds_count', {
        route: '/api/v1/detections/run',
        method: 'POST',
      }),
    ).toBe(1);

    // The new finding goes to the syslog destination: what the socket received is what is counted.
    await waitFor(async () => (received.length >= 1 ? true : undefined), 20_000, 'the SIEM message');
    const siem = await waitFor(
      async () => {
        const t = await scrape();
        return sample(t, 'flowsentry_siem_messages_queued', { destination: 'default' }) === 0 ? t : undefined;
      },
      20_000,
      'an empty SIEM backlog',
    );
    expect(sample(siem, 'flowsentry_siem_messages_sent_total', { destination: 'default' })).toBe(
      received.length,
    );
    expect(received.some((m) => m.includes('vertical-port-scan'))).toBe(true);
    expect(sample(siem, 'flowsentry_siem_messages_failed_total', { destination: 'default' })).toBe(0);
    expect(sample(siem, 'flowsentry_siem_oldest_unsent_age_seconds', { destination: 'default' })).toBe(0);
  });

  test('every metric and grouping label the Prometheus dashboard panels use is exposed', async () => {
    const text = await scrape();
    const types = new Map(
      [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!] as [string, string]),
    );
    // Label names seen per metric family (histogram series under their base name).
    const labels = new Map<string, Set<string>>();
    for (const m of text.matchAll(/^([a-z_:][a-z0-9_:]*?)(?:_bucket|_count|_sum)?\{([^}]*)\} /gm)) {
      const set = labels.get(m[1]!) ?? new Set<string>();
      for (const l of m[2]!.matchAll(/([a-z_]+)="/g)) set.add(l[1]!);
      labels.set(m[1]!, set);
    }
    const exprs = readdirSync(join(REPO_ROOT, 'dashboards'))
      .filter((f) => f.endsWith('.json'))
      .flatMap((f) => {
        const board = JSON.parse(readFileSync(join(REPO_ROOT, 'dashboards', f), 'utf8')) as {
          panels: Array<{ title: string; targets?: Array<{ datasource: { type: string }; expr?: string }> }>;
        };
        return board.panels.flatMap((p) =>
          (p.targets ?? [])
            .filter((t) => t.datasource.type === 'prometheus')
            .map((t) => ({ p, expr: t.expr! })),
        );
      });
    expect(exprs.length).toBeGreaterThanOrEqual(20);
    for (const { p, expr } of exprs) {
      const families = [...expr.matchAll(/\bflowsentry_[a-z0-9_]+/g)].map((m) => {
        const name = m[0];
        const base = name.replace(/_(bucket|count|sum)$/, '');
        if (types.has(name)) return name;
        expect(types.get(base), `${p.title}: ${name}`).toBe('histogram');
        return base;
      });
      expect(families.length, `${p.title}: ${expr}`).toBeGreaterThan(0);
      for (const by of expr.matchAll(/by \(([^)]*)\)/g)) {
        for (const label of by[1]!.split(',').map((l) => l.trim())) {
          if (label === 'le') continue;
          expect(
            families.some((f) => labels.get(f)?.has(label)),
            `${p.title}: label ${label} on ${families.join(', ')}`,
          ).toBe(true);
        }
      }
    }
  });
});
