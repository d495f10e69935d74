import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { lossFigures } from '../../src/api/exporters.js';
import { redisPinger } from '../../src/api/system.js';
import { TECHNIQUES, type TechniqueId } from '../../src/detect/attack.js';
import { DETECTORS } from '../../src/detect/registry.js';
import { applyStoredSettings, DetectorSettingsStore } from '../../src/detect/settings.js';
import { queryRows } from '../../src/storage/clickhouse.js';
import { ApiFixture, HOSTS, qs } from '../support/api.js';
import { openApiOf } from '../support/openapi.js';
import { REPO_ROOT } from '../support/service.js';

/**
 * Every route of the API through fastify's inject, on the embedded ClickHouse holding real flows
 * (softflowd exports decoded by the collector's decoder) and the findings the detection engine made
 * of them. Answers are compared with SQL run directly on the store, and every answer is checked
 * against the response schema the OpenAPI document declares for it.
 */

let f: ApiFixture;
let app: FastifyInstance;
let spec: Awaited<ReturnType<typeof openApiOf>>;
const refreshed: string[] = [];
const REDIS_UP = await redisUp();
const mismatches: string[] = [];

beforeAll(async () => {
  f = await ApiFixture.open();
  app = await f.app({}, { scheduler: { refresh: async (id: string) => void refreshed.push(id) } });
  spec = await openApiOf(app);
}, 180_000);

afterAll(async () => {
  await f?.close();
});

/** A JSON answer whose shape the assertions check (and the OpenAPI document, in `call`). */
// biome-ignore lint/suspicious/noExplicitAny: answers are checked by the assertions and the schema check
type Json = Record<string, any>;

interface Answer<T> {
  status: number;
  body: T;
  headers: Record<string, unknown>;
}

/** Injects a request; the answer must match its declared schema (collected, asserted at the end). */
async function call<T = Record<string, unknown>>(
  options: InjectOptions | string,
  target: FastifyInstance = app,
): Promise<Answer<T>> {
  const o = typeof options === 'string' ? { method: 'GET' as const, url: options } : options;
  const url = typeof o.url === 'string' ? o.url : '/';
  const r = await target.inject(o);
  const isJson = String(r.headers['content-type'] ?? '').includes('json');
  const body = (isJson ? JSON.parse(r.body) : r.body) as T;
  // Unknown routes are not in the document; everything else must be.
  if (isJson && !(r.statusCode === 404 && r.json().message?.startsWith('no route')))
    mismatches.push(...spec.check(o.method ?? 'GET', url, r.statusCode, body));
  return { status: r.statusCode, body, headers: r.headers };
}

const count = async (where: string, params: Record<string, unknown> = {}) => {
  const [row] = await queryRows<{ n: number }>(
    f.store,
    `SELECT count() AS n FROM flows WHERE ${where}`,
    params,
  );
  return Number(row?.n ?? 0);
};

const inRange = () => {
  const r = f.range();
  return {
    sql: `flow_end >= fromUnixTimestamp64Milli({from:Int64}) AND flow_end < fromUnixTimestamp64Milli({to:Int64})`,
    params: { from: Date.parse(r.from), to: Date.parse(r.to) },
    ...r,
  };
};

interface Flow {
  src_addr: string;
  dst_addr: string;
  src_port: number;
  dst_port: number;
  proto: number;
  exporter_address: string;
  flow_end: string;
  bytes: number;
}
interface Page<T> {
  items: T[];
  next_cursor: string | null;
}
interface Finding {
  id: string;
  detector: string;
  src_ip: string | null;
  dst_ip: string | null;
  status: string;
  severity: string;
  technique_ids: string[];
  tactic_ids: string[];
  title: string;
  version: number;
  created_at: string;
  history?: Array<{
    actor: string;
    action: string;
    to_status: string | null;
    comment: string;
    rule_id: string | null;
  }>;
  allowlist_rules?: Array<{
    id: string;
    src_cidr: string | null;
    dst_cidr: string | null;
    detector: string | null;
  }>;
}

async function allPages<T>(url: string, limit: number): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 10_000; i++) {
    const page: Answer<Page<T>> = await call<Page<T>>(
      `${url}${url.includes('?') ? '&' : '?'}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    );
    expect(page.status).toBe(200);
    expect(page.body.items.length).toBeLessThanOrEqual(limit);
    out.push(...page.body.items);
    cursor = page.body.next_cursor;
    if (!cursor) return out;
  }
  throw new Error('pagination did not end');
}

const findings = async (query = '') => (await call<Page<Finding>>(`/api/v1/findings?${query}`)).body.items;
const scanFinding = async () => (await findings(`ip=${HOSTS.scanner}`))[0]!;
const insiderFinding = async () => (await findings(`ip=${HOSTS.insider}`))[0]!;

describe('system routes', () => {
  test('/healthz keeps its fields: status, version, storage, engine, listeners, uptime', async () => {
    const r = await call('/healthz');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      status: 'ok',
      version: '0.0.0-test',
      storage: 'ok',
      storage_engine: 'chdb',
      listeners: [{ listen: '127.0.0.1:2055', address: '127.0.0.1', port: 2055 }],
      uptime_seconds: expect.any(Number),
    });
  });

  test('/readyz checks storage, and Redis when it is configured', async () => {
    const plain = await call<{ status: string; checks: Record<string, { status: string }> }>('/readyz');
    expect(plain.status).toBe(200);
    expect(plain.body).toMatchObject({ status: 'ready', checks: { storage: { status: 'ok' } } });
    expect(plain.body.checks.redis).toBeUndefined();

    // Nothing listens on port 1: Redis is not ready, and neither is the service.
    const down = await f.app({}, { redis: redisPinger('redis://127.0.0.1:1') });
    const r = await call<{ status: string; checks: { redis: { status: string; error: string } } }>(
      '/readyz',
      down,
    );
    expect(r.status).toBe(503);
    expect(r.body).toMatchObject({
      status: 'not_ready',
      checks: { storage: { status: 'ok' }, redis: { status: 'error' } },
    });
    expect(r.body.checks.redis.error).toMatch(/ECONNREFUSED|closed|connect/i);
  });

  test.runIf(REDIS_UP)('/readyz with a reachable Redis is ready', async () => {
    const up = await f.app({}, { redis: redisPinger('redis://127.0.0.1:6379') });
    const r = await call<{ status: string; checks: { redis: { status: string } } }>('/readyz', up);
    expect(r.status).toBe(200);
    expect(r.body.checks.redis.status).toBe('ok');
  });

  test('/metrics is Prometheus text and counts API requests by route and status', async () => {
    await call('/api/v1/nothing-here');
    const r = await call<string>('/metrics');
    expect(r.status).toBe(200);
    expect(String(r.headers['content-type'])).toMatch(/^text\/plain/);
    expect(r.body).toMatch(
      /^flowsentry_api_requests_total\{route="\/healthz",method="GET",status="200"\} \d+$/m,
    );
    expect(r.body).toMatch(/^flowsentry_api_requests_total\{route="none",method="GET",status="404"\} \d+$/m);
  });

  test('/api/v1/templates lists the templates the decoder holds', async () => {
    const r = await call<{ items: Array<{ address: string; id: number; fields: unknown[] }> }>(
      '/api/v1/templates',
    );
    const expected = f.decoders.flatMap((d) => d.templates());
    expect(r.status).toBe(200);
    expect(r.body.items).toEqual(expected);
    expect(r.body.items.length).toBeGreaterThan(0);
  });

  test("the README's /api/v1/templates row names exactly the fields the endpoint returns", async () => {
    const r = await call<{
      items: Array<Record<string, unknown> & { fields: Array<Record<string, unknown>> }>;
    }>('/api/v1/templates');
    const item = r.body.items[0]!;
    const returned = new Set(['items', ...Object.keys(item), ...Object.keys(item.fields[0]!)]);
    const row = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8')
      .split('\n')
      .find((l) => l.startsWith('| `GET /api/v1/templates`'))!;
    const shape = /`(\{"items".*?\})`/.exec(row)![1]!;
    const documented = new Set([...shape.matchAll(/"([a-z_]+)"/g)].map((m) => m[1]!));
    expect([...documented].sort()).toEqual([...returned].sort());
  });

  test('/api/v1/collector: listeners, decoder counters and state (layouts included), spool, writer', async () => {
    const r = await call<Json>('/api/v1/collector');
    expect(r.status).toBe(200);
    expect(r.body.receive_thread).toEqual({
      tid: 4242,
      requested_nice: -10,
      nice: 0,
      error: 'EACCES: permission denied',
    });
    expect(r.body.state.layouts).toBe(f.decoders.reduce((n, d) => n + d.size.layouts, 0));
    expect(r.body.decoder.records).toBe(f.decoders.reduce((n, d) => n + d.counters.records, 0));
    expect(r.body.storage).toMatchObject({
      writer: { insertedRows: f.records, lastError: null },
      spoolBytes: 0,
    });
    expect(r.body.listeners[0]).toMatchObject({ listen: '127.0.0.1:2055', kernel: { drops: 0 } });
  });

  test('/docs serves the OpenAPI UI and /openapi.json the document, which is valid OpenAPI 3.1', async () => {
    const ui = await app.inject('/docs');
    expect(ui.statusCode).toBe(200);
    expect(ui.body).toContain('Swagger UI');
    expect(spec.errors ?? []).toEqual([]);
    expect(spec.valid).toBe(true);
    const paths = Object.keys(spec.doc.paths).sort();
    for (const path of [
      '/healthz',
      '/readyz',
      '/metrics',
      '/api/v1/findings',
      '/api/v1/findings/{id}',
      '/api/v1/findings/{id}/flows',
      '/api/v1/detectors',
      '/api/v1/detectors/{id}',
      '/api/v1/detections/run',
      '/api/v1/flows',
      '/api/v1/flows/top',
      '/api/v1/flows/summary',
      '/api/v1/flows/timeseries',
      '/api/v1/exporters',
      '/api/v1/attack',
      '/api/v1/attack/navigator',
      '/api/v1/allowlist',
      '/api/v1/allowlist/{id}',
      '/api/v1/templates',
      '/api/v1/collector',
    ]) {
      expect(paths).toContain(path);
    }
    expect(spec.doc.paths['/api/v1/findings/{id}']!.patch).toBeDefined();
    expect(paths.some((p) => p.startsWith('/docs'))).toBe(false);
  });
});

describe('exporters', () => {
  test('one item per exporter stream, sorted, with the decoder counters and loss figures', async () => {
    const r = await call<{ items: Array<Record<string, unknown>> }>('/api/v1/exporters');
    expect(r.status).toBe(200);
    const streams = f.decoders.flatMap((d) => d.streams());
    expect(r.body.items.map((i) => i.address)).toEqual([HOSTS.exporter, HOSTS.exporter2]);
    for (const item of r.body.items) {
      const { sequence_gaps: _g, ...stream } = streams.find((s) => s.address === item.address)!;
      expect(item).toEqual({ ...stream, loss_ratio: 0, loss_percent: 0 });
    }
  });

  test('loss figures: records the sequence numbers say were lost, over all sent', () => {
    expect(lossFigures({ records: 90, option_records: 0, sequence_lost_records: 10 })).toEqual({
      loss_ratio: 0.1,
      loss_percent: 10,
    });
    expect(lossFigures({ records: 0, option_records: 0, sequence_lost_records: 0 })).toEqual({
      loss_ratio: 0,
      loss_percent: 0,
    });
  });
});

describe('flows', () => {
  test('search: newest first, every flow of the range once across pages, as many as SQL counts', async () => {
    const r = inRange();
    const total = await count(r.sql, r.params);
    expect(total).toBe(f.records);
    const items = await allPages<Flow>(`/api/v1/flows?${qs({ from: r.from, to: r.to })}`, 17);
    expect(items).toHaveLength(total);
    expect(new Set(items.map((i) => JSON.stringify(i))).size).toBe(total);
    const ends = items.map((i) => Date.parse(i.flow_end));
    expect([...ends].sort((a, b) => b - a)).toEqual(ends);
    expect(items.find((i) => i.src_addr === HOSTS.v6client)).toMatchObject({
      dst_addr: HOSTS.v6server,
      dst_port: 443,
    });
  });

  test('search filters: ip/CIDR, src_ip, dst_ip, port, src_port, dst_port, protocol, exporter', async () => {
    const r = inRange();
    const cases: Array<[Record<string, string | number>, string, Record<string, unknown>]> = [
      [
        { ip: '10.2.0.0/16' },
        "(isIPAddressInRange(IPv6NumToString(src_addr), '::ffff:10.2.0.0/112') OR isIPAddressInRange(IPv6NumToString(dst_addr), '::ffff:10.2.0.0/112'))",
        {},
      ],
      [{ src_ip: HOSTS.scanner }, "src_addr = toIPv6('203.0.113.9')", {}],
      [{ dst_ip: HOSTS.web }, "dst_addr = toIPv6('192.0.2.80')", {}],
      [
        { ip: '2001:db8::/32' },
        "(startsWith(IPv6NumToString(src_addr), '2001:db8:') OR startsWith(IPv6NumToString(dst_addr), '2001:db8:'))",
        {},
      ],
      [{ port: 443 }, '(src_port = 443 OR dst_port = 443)', {}],
      [{ src_port: 40_000 }, 'src_port = 40000', {}],
      [{ dst_port: 53 }, 'dst_port = 53', {}],
      [{ protocol: 'udp' }, 'proto = 17', {}],
      [{ protocol: 1 }, 'proto = 1', {}],
      [{ exporter: HOSTS.exporter2 }, "exporter_address = toIPv6('198.51.100.7')", {}],
      [
        { ip: HOSTS.client, protocol: 'tcp', port: 443 },
        "(src_addr = toIPv6('10.1.1.10') OR dst_addr = toIPv6('10.1.1.10')) AND proto = 6 AND (src_port = 443 OR dst_port = 443)",
        {},
      ],
    ];
    for (const [filter, where, params] of cases) {
      const expected = await count(`${r.sql} AND ${where}`, { ...r.params, ...params });
      expect(expected, JSON.stringify(filter)).toBeGreaterThan(0);
      const items = await allPages<Flow>(`/api/v1/flows?${qs({ from: r.from, to: r.to, ...filter })}`, 1000);
      expect(items.length, JSON.stringify(filter)).toBe(expected);
    }
  });

  test('search: bad cursors and ranges are 400s', async () => {
    const r = inRange();
    for (const cursor of ['nonsense', Buffer.from('["f",1,2,"x","y","z",1,2,3,4,1]').toString('base64url')]) {
      const bad = await call(`/api/v1/flows?${qs({ from: r.from, to: r.to, cursor })}`);
      expect(bad.status).toBe(400);
      expect(bad.body.message).toMatch(/^cursor: /);
    }
    const long = await call(
      `/api/v1/flows?${qs({ from: '2026-01-01T00:00:00Z', to: '2026-03-01T00:00:00Z' })}`,
    );
    expect(long).toMatchObject({
      status: 400,
      body: { error: 'bad_request', message: 'to: at most 31 days per request for a flow query' },
    });
    const missing = await call('/api/v1/flows?to=2026-01-01T00:00:00Z');
    expect(missing.status).toBe(400);
    expect(missing.body.message).toMatch(/^from: /);
  });

  test('top N by every dimension and metric, as SQL groups them', async () => {
    const r = inRange();
    const dims: Record<string, string> = {
      src: 'src_addr',
      dst: 'dst_addr',
      src_port: 'src_port',
      dst_port: 'dst_port',
      protocol: 'proto',
      exporter: 'exporter_address',
      src_as: 'src_as',
      dst_as: 'dst_as',
    };
    for (const [by, column] of Object.entries(dims)) {
      for (const metric of ['bytes', 'packets', 'flows'] as const) {
        const expr = metric === 'flows' ? 'count()' : `sum(${metric})`;
        const sql = await queryRows<{ v: number }>(
          f.store,
          `SELECT ${expr} AS v FROM flows WHERE ${r.sql} GROUP BY ${column} ORDER BY v DESC LIMIT 5`,
          r.params,
        );
        const a = await call<{
          items: Array<{ key: string | number; share: number } & Record<string, number>>;
          totals: Record<string, number>;
        }>(`/api/v1/flows/top?${qs({ from: r.from, to: r.to, by, metric, limit: 5 })}`);
        expect(a.status).toBe(200);
        expect(a.body.items.map((i) => i[metric])).toEqual(sql.map((s) => Number(s.v)));
        expect(a.body.totals.flows).toBe(f.records);
        expect(a.body.items.reduce((s, i) => s + i.share, 0)).toBeLessThanOrEqual(1.000001);
      }
    }
    const src = await call<{ items: Array<{ key: string; flows: number }> }>(
      `/api/v1/flows/top?${qs({ from: r.from, to: r.to, by: 'src', metric: 'flows', protocol: 'tcp', dst_ip: HOSTS.victim })}`,
    );
    expect(src.body.items).toEqual([expect.objectContaining({ key: HOSTS.scanner, flows: 60 })]);
    const bad = await call(`/api/v1/flows/top?${qs({ from: r.from, to: r.to, by: 'password' })}`);
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/^by: /);
  });

  test('timeseries: rollups and raw flows give the same points; the totals are those of the range', async () => {
    const r = inRange();
    type Series = {
      interval_seconds: number;
      source: string;
      points: Array<{ time: string; flows: number; bytes: number; packets: number }>;
      from: string;
    };
    const rollup = await call<Series>(`/api/v1/flows/timeseries?${qs({ from: r.from, to: r.to })}`);
    expect(rollup.status).toBe(200);
    expect(rollup.body.interval_seconds).toBe(60);
    expect(rollup.body.source).toBe('flows_1m');
    // ::/0 matches every address: a host filter, which only the raw table can answer.
    const raw = await call<Series>(`/api/v1/flows/timeseries?${qs({ from: r.from, to: r.to, ip: '::/0' })}`);
    expect(raw.body.source).toBe('flows');
    expect(raw.body.points).toEqual(rollup.body.points);
    const [received] = await queryRows<{ n: number; b: number }>(
      f.store,
      `SELECT count() AS n, sum(bytes) AS b FROM flows
       WHERE time_received >= toDateTime({from:UInt32}) AND time_received < toDateTime({to:UInt32})`,
      { from: Date.parse(rollup.body.from) / 1000, to: Math.ceil(Date.parse(r.to) / 60_000) * 60 },
    );
    expect(rollup.body.points.reduce((s, p) => s + p.flows, 0)).toBe(Number(received!.n));
    expect(rollup.body.points.reduce((s, p) => s + p.bytes, 0)).toBe(Number(received!.b));

    const hourly = await call<Series>(
      `/api/v1/flows/timeseries?${qs({ from: r.from, to: r.to, interval: '1h' })}`,
    );
    expect(hourly.body).toMatchObject({ interval_seconds: 3600, source: 'flows_1h' });
    expect(hourly.body.points.reduce((s, p) => s + p.flows, 0)).toBe(Number(received!.n));
    const fine = await call<Series>(
      `/api/v1/flows/timeseries?${qs({ from: r.from, to: r.to, interval: '30s' })}`,
    );
    expect(fine.body).toMatchObject({ interval_seconds: 30, source: 'flows' });
    const udp = await call<Series>(
      `/api/v1/flows/timeseries?${qs({ from: r.from, to: r.to, protocol: 'udp', exporter: HOSTS.exporter2 })}`,
    );
    expect(udp.body.source).toBe('flows_1m');
    expect(udp.body.points.reduce((s, p) => s + p.flows, 0)).toBe(
      await count("proto = 17 AND exporter_address = toIPv6('198.51.100.7')"),
    );

    const week = await call<Series>(
      `/api/v1/flows/timeseries?${qs({ from: '2026-01-01T00:00:00Z', to: '2026-01-08T00:00:00Z' })}`,
    );
    expect(week.body.interval_seconds).toBe(3600);
    expect(week.body.points).toHaveLength(168);
    const tooMany = await call(
      `/api/v1/flows/timeseries?${qs({ from: '2026-01-01T00:00:00Z', to: '2026-01-08T00:00:00Z', interval: '1m' })}`,
    );
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.message).toMatch(/^interval: 10080 points; at most 2000/);
    const year = await call(
      `/api/v1/flows/timeseries?${qs({ from: '2024-01-01T00:00:00Z', to: '2026-01-01T00:00:00Z' })}`,
    );
    expect(year.status).toBe(400);
    const rawLong = await call(
      `/api/v1/flows/timeseries?${qs({ from: '2026-01-01T00:00:00Z', to: '2026-03-01T00:00:00Z', port: 53, interval: '1d' })}`,
    );
    expect(rawLong.status).toBe(400);
    expect(rawLong.body.message).toMatch(/at most 31 days/);
  });

  test('summary keeps its answer and accepts any range', async () => {
    const r = inRange();
    const [sql] = await queryRows<{ n: number; b: number; p: number }>(
      f.store,
      `SELECT count() AS n, sum(bytes) AS b, sum(packets) AS p FROM flows WHERE ${r.sql}`,
      r.params,
    );
    expect((await call(`/api/v1/flows/summary?${qs({ from: r.from, to: r.to })}`)).body).toEqual({
      flows: Number(sql!.n),
      bytes: Number(sql!.b),
      packets: Number(sql!.p),
    });
    const all = await call(
      '/api/v1/flows/summary?from=1970-01-01T00:00:00Z&to=2200-01-01T00:00:00Z&exporter=198.51.100.7',
    );
    expect(all).toMatchObject({
      status: 200,
      body: { flows: await count("exporter_address = toIPv6('198.51.100.7')") },
    });
  });

  test('identical flow records are each returned once across pages', async () => {
    // Copies of the v6 session's flows: rows that agree on every column, which only a cursor that
    // counts the rows it already returned at its key can page through.
    await f.store.client.command({
      query: `INSERT INTO flows SELECT * FROM flows WHERE src_addr = toIPv6('2001:db8::10') OR dst_addr = toIPv6('2001:db8::10') SETTINGS insert_deduplication_token = 'copy-1'`,
    });
    await f.store.client.command({
      query: `INSERT INTO flows SELECT * FROM flows WHERE src_addr = toIPv6('2001:db8::10') OR dst_addr = toIPv6('2001:db8::10') SETTINGS insert_deduplication_token = 'copy-2'`,
    });
    const r = inRange();
    const expected = await count(
      `${r.sql} AND (src_addr = toIPv6('2001:db8::10') OR dst_addr = toIPv6('2001:db8::10'))`,
      r.params,
    );
    expect(expected).toBeGreaterThanOrEqual(8);
    for (const limit of [1, 3]) {
      const items = await allPages<Flow>(
        `/api/v1/flows?${qs({ from: r.from, to: r.to, ip: HOSTS.v6client })}`,
        limit,
      );
      expect(items).toHaveLength(expected);
    }
  });
});

describe('findings', () => {
  test('the list: both scans the engine found, filtered by every filter', async () => {
    const all = await findings();
    expect(all).toHaveLength(2);
    const scan = await scanFinding();
    const insider = await insiderFinding();
    expect(scan).toMatchObject({
      src_ip: HOSTS.scanner,
      dst_ip: HOSTS.victim,
      technique_ids: ['T1595.001'],
      severity: 'low',
    });
    expect(insider).toMatchObject({ src_ip: HOSTS.insider, technique_ids: ['T1046'], severity: 'medium' });
    const ids = async (query: string) => (await findings(query)).map((x) => x.id).sort();
    const both = [scan.id, insider.id].sort();
    expect(await ids('status=open')).toEqual(both);
    expect(await ids('status=resolved,suppressed')).toEqual([]);
    expect(await ids('severity=medium')).toEqual([insider.id]);
    expect(await ids('severity=low')).toEqual(both);
    expect(await ids('detector=vertical-port-scan')).toEqual(both);
    expect(await ids('detector=beaconing')).toEqual([]);
    expect(await ids('technique=T1595')).toEqual([scan.id]);
    expect(await ids('technique=T1595.001')).toEqual([scan.id]);
    expect(await ids('technique=T1595.002')).toEqual([]);
    expect(await ids('tactic=TA0007')).toEqual([insider.id]);
    expect(await ids('tactic=TA0043,TA0007')).toEqual(both);
    expect(await ids(`ip=${HOSTS.victim}`)).toEqual([scan.id]);
    expect(await ids('ip=10.2.0.0/24')).toEqual(both);
    expect(await ids('ip=2001:db8::/32')).toEqual([]);
    expect(await ids(`exporter=${HOSTS.exporter}`)).toEqual(both);
    expect(await ids(`exporter=${HOSTS.exporter2}`)).toEqual([]);
    expect(await ids('q=EXTERNAL')).toEqual([scan.id]);
    expect(await ids(`q=${encodeURIComponent('port scan')}`)).toEqual(both);
    const { from, to } = f.range(0);
    expect(await ids(qs({ from, to }))).toEqual(both);
    expect(await ids(qs({ to: from }))).toEqual([]);
    expect(await ids(qs({ from: to }))).toEqual([]);
    const asc = (await findings('sort=first_seen')).map((x) => x.id);
    const desc = (await findings('sort=-first_seen')).map((x) => x.id);
    expect(asc).toEqual([...desc].reverse());
    const paged = await allPages<Finding>('/api/v1/findings?sort=-created_at', 1);
    expect(paged.map((x) => x.id).sort()).toEqual(both);
  });

  test('bad filters are 400s naming the field', async () => {
    for (const [query, field] of [
      ['severity=huge', 'severity'],
      ['status=closed', 'status'],
      ['technique=1046', 'technique'],
      ['tactic=T1046', 'tactic'],
      ['ip=10.0.0.0/33', 'ip'],
      ['exporter=nope', 'exporter'],
      ['sort=title', 'sort'],
      ['limit=0', 'limit'],
      ['cursor=abc', 'cursor'],
      ['from=yesterday', 'from'],
      ['unknown=1', ''],
    ]) {
      const r = await call(`/api/v1/findings?${query}`);
      expect(r.status, query).toBe(400);
      expect(r.body.error).toBe('bad_request');
      if (field) expect(r.body.message, query).toMatch(new RegExp(`^${field}(\\.\\d+)?: `));
    }
  });

  test('by id: the finding with its evidence and history; 404 and 400 otherwise', async () => {
    const scan = await scanFinding();
    const r = await call<Finding & { evidence: Record<string, unknown> }>(`/api/v1/findings/${scan.id}`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: scan.id, history: [], allowlist_rules: [] });
    expect(r.body.evidence.distinct_ports).toBe(60);
    expect(r.body.evidence.open_ports).toEqual([22]);
    const missing = await call('/api/v1/findings/00000000-0000-8000-8000-000000000000');
    expect(missing).toMatchObject({ status: 404, body: { error: 'not_found' } });
    const bad = await call('/api/v1/findings/not-an-id');
    expect(bad).toMatchObject({ status: 400, body: { error: 'bad_request' } });
    expect((await call('/api/v1/findings/00000000-0000-8000-8000-000000000000/flows')).status).toBe(404);
  });

  test('its flows: the records between its hosts within its time span, both ways, paginated', async () => {
    const scan = await scanFinding();
    const params = {
      s: '::ffff:203.0.113.9',
      d: '::ffff:10.2.0.1',
      first: Date.parse((scan as unknown as { first_seen: string }).first_seen),
      last: Date.parse((scan as unknown as { last_seen: string }).last_seen),
    };
    const expected = await count(
      `flow_end >= fromUnixTimestamp64Milli({first:Int64}) AND flow_start <= fromUnixTimestamp64Milli({last:Int64})
       AND ((src_addr = toIPv6({s:String}) AND dst_addr = toIPv6({d:String})) OR (src_addr = toIPv6({d:String}) AND dst_addr = toIPv6({s:String})))`,
      params,
    );
    // 60 probes, their RST answers, and the open port's SYN-ACK and reset.
    expect(expected).toBeGreaterThanOrEqual(120);
    const items = await allPages<Flow>(`/api/v1/findings/${scan.id}/flows`, 50);
    expect(items).toHaveLength(expected);
    for (const i of items)
      expect([i.src_addr, i.dst_addr].sort()).toEqual([HOSTS.victim, HOSTS.scanner].sort());
  });

  test('PATCH: status with a comment and the acting user, kept as history', async () => {
    const insider = await insiderFinding();
    const ack = await call<Finding>({
      method: 'PATCH',
      url: `/api/v1/findings/${insider.id}`,
      payload: { status: 'acknowledged', comment: 'looking into it', user: 'alice' },
    });
    expect(ack.status).toBe(200);
    expect(ack.body.status).toBe('acknowledged');
    expect(ack.body.version).toBeGreaterThan(insider.version);
    const resolved = await call<Finding>({
      method: 'PATCH',
      url: `/api/v1/findings/${insider.id}`,
      payload: { status: 'resolved' },
    });
    expect(resolved.body.history).toEqual([
      expect.objectContaining({
        actor: 'alice',
        action: 'status',
        to_status: 'acknowledged',
        comment: 'looking into it',
      }),
      expect.objectContaining({ actor: 'anonymous', action: 'status', to_status: 'resolved', comment: '' }),
    ]);
    expect((await call<Finding>(`/api/v1/findings/${insider.id}`)).body.history).toHaveLength(2);
    expect(await findings('status=resolved')).toEqual([expect.objectContaining({ id: insider.id })]);
    // Reopened, as it was.
    const reopened = await call<Finding>({
      method: 'PATCH',
      url: `/api/v1/findings/${insider.id}`,
      payload: { status: 'open' },
    });
    expect(reopened.body.status).toBe('open');

    for (const [payload, message] of [
      [{ status: 'closed' }, /^status: /],
      [{ status: 'resolved', comment: 'x'.repeat(2001) }, /^comment: /],
      [{ status: 'resolved', extra: 1 }, /Unrecognized key/],
      [
        { status: 'acknowledged', allowlist: { match: 'src' } },
        /^allowlist: an allowlist rule comes only with status suppressed/,
      ],
      [
        { status: 'suppressed', allowlist: { match: 'src', src_cidr: '10.9.0.0/16' } },
        /does not contain 10.1.1.5/,
      ],
      [
        { status: 'suppressed', allowlist: { match: 'dst', src_cidr: '10.1.0.0/16' } },
        /only with match src or pair/,
      ],
      [
        { status: 'suppressed', allowlist: { match: 'src', expires_at: '2020-01-01T00:00:00Z' } },
        /must be in the future/,
      ],
    ] as const) {
      const r = await call({ method: 'PATCH', url: `/api/v1/findings/${insider.id}`, payload });
      expect(r.status, JSON.stringify(payload)).toBe(400);
      expect(r.body.message).toMatch(message);
    }
    const body = await call({
      method: 'PATCH',
      url: `/api/v1/findings/${insider.id}`,
      payload: 'not json',
      headers: { 'content-type': 'application/json' },
    });
    expect(body.status).toBe(400);
    const missing = await call({
      method: 'PATCH',
      url: '/api/v1/findings/00000000-0000-8000-8000-000000000000',
      payload: { status: 'resolved' },
    });
    expect(missing.status).toBe(404);
  });

  test('suppressing with an allowlist rule: the engine drops that activity until the finding is reopened', async () => {
    const { engine } = f.detection;
    const backfill = () => engine.backfill({ from: f.firstMs - 60_000, to: f.lastMs + 60_000 });
    expect((await backfill()).findings_updated).toBe(2);

    const scan = await scanFinding();
    const suppressed = await call<Finding>({
      method: 'PATCH',
      url: `/api/v1/findings/${scan.id}`,
      payload: {
        status: 'suppressed',
        comment: 'our scanner',
        user: 'bob',
        allowlist: { match: 'src', src_cidr: '203.0.113.0/24' },
      },
    });
    expect(suppressed.status).toBe(200);
    const rule = suppressed.body.allowlist_rules![0]!;
    expect(rule).toMatchObject({
      src_cidr: '203.0.113.0/24',
      dst_cidr: null,
      detector: 'vertical-port-scan',
    });
    expect(suppressed.body.history!.map((h) => h.action)).toEqual(['status', 'allowlist_rule_created']);
    expect(suppressed.body.history![1]!.rule_id).toBe(rule.id);
    const list = await call<{ items: Array<{ id: string; active: boolean; created_by: string }> }>(
      '/api/v1/allowlist',
    );
    expect(list.body.items).toEqual([
      expect.objectContaining({ id: rule.id, active: true, created_by: 'bob' }),
    ]);

    // The scanner's observations are dropped: only the insider's finding is updated.
    const before = (await scanFinding()).version;
    expect((await backfill()).findings_updated).toBe(1);
    expect((await scanFinding()).version).toBe(before);

    // Reopening lifts the suppression: the rule goes, the engine sees the scan again.
    const reopened = await call<Finding>({
      method: 'PATCH',
      url: `/api/v1/findings/${scan.id}`,
      payload: { status: 'open', user: 'bob' },
    });
    expect(reopened.body.allowlist_rules).toEqual([]);
    expect(reopened.body.history!.map((h) => h.action)).toEqual([
      'status',
      'allowlist_rule_created',
      'status',
      'allowlist_rule_removed',
    ]);
    expect((await call<{ items: unknown[] }>('/api/v1/allowlist')).body.items).toEqual([]);
    expect((await backfill()).findings_updated).toBe(2);
  });

  test('allowlist rules: a pair rule for every detector, removed through DELETE; expired rules do not apply', async () => {
    const scan = await scanFinding();
    const r = await call<Finding>({
      method: 'PATCH',
      url: `/api/v1/findings/${scan.id}`,
      payload: {
        status: 'suppressed',
        allowlist: {
          match: 'pair',
          detector: 'any',
          expires_at: new Date(Date.now() + 3_600_000).toISOString(),
        },
      },
    });
    const rule = r.body.allowlist_rules![0]!;
    expect(rule).toMatchObject({ src_cidr: '203.0.113.9/32', dst_cidr: '10.2.0.1/32', detector: null });
    expect(await f.detection.allowlist.rulesFor('any-detector')).toHaveLength(1);
    const removed = await call({ method: 'DELETE', url: `/api/v1/allowlist/${rule.id}` });
    expect(removed).toMatchObject({ status: 200, body: { id: rule.id } });
    expect((await call({ method: 'DELETE', url: `/api/v1/allowlist/${rule.id}` })).status).toBe(404);
    expect((await call({ method: 'DELETE', url: '/api/v1/allowlist/nope' })).status).toBe(400);
    expect((await call<Finding>(`/api/v1/findings/${scan.id}`)).body.history!.at(-1)).toMatchObject({
      action: 'allowlist_rule_removed',
      rule_id: rule.id,
    });
    expect(await f.detection.allowlist.rulesFor('vertical-port-scan')).toEqual([]);

    const soon = await f.detection.allowlist.create({
      detector: null,
      srcCidr: '198.18.0.0/15',
      dstCidr: null,
      comment: 'short',
      actor: 'test',
      expiresAt: Date.now() + 300,
      findingId: null,
    });
    expect(await f.detection.allowlist.rulesFor('vertical-port-scan')).toHaveLength(1);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(await f.detection.allowlist.rulesFor('vertical-port-scan')).toEqual([]);
    expect(
      (await call<{ items: Array<{ id: string; active: boolean }> }>('/api/v1/allowlist?active=true')).body
        .items,
    ).toEqual([]);
    expect(
      (await call<{ items: Array<{ id: string; active: boolean }> }>('/api/v1/allowlist')).body.items,
    ).toEqual([expect.objectContaining({ id: soon.id, active: false })]);
    await f.detection.allowlist.remove(soon.id, 'test');
    await call({ method: 'PATCH', url: `/api/v1/findings/${scan.id}`, payload: { status: 'open' } });
  });
});

describe('detectors', () => {
  const url = '/api/v1/detectors/vertical-port-scan';

  test('GET: metadata, parameters, ATT&CK IDs and the last run', async () => {
    const r = await call<{ items: Array<Json> }>('/api/v1/detectors');
    expect(r.status).toBe(200);
    expect(r.body.items[0]).toMatchObject({
      id: 'vertical-port-scan',
      technique_ids: ['T1046', 'T1595.001'],
      tactic_ids: ['TA0043', 'TA0007'],
      enabled: true,
      params: { minPorts: 15 },
      last_run: { mode: 'backfill', error: null },
    });
  });

  test('PATCH: enable/disable, interval and parameters, applied to the engine, told to the scheduler, kept in ClickHouse', async () => {
    refreshed.length = 0;
    const r = await call<Json>({
      method: 'PATCH',
      url,
      payload: { enabled: false, interval_seconds: 120, params: { minPorts: 25 } },
    });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      enabled: false,
      interval_seconds: 120,
      lookback_seconds: 300,
      params: { minPorts: 25, widePorts: 1000 },
    });
    expect(f.detection.engine.detector('vertical-port-scan')).toMatchObject({
      enabled: false,
      intervalSeconds: 120,
    });
    expect(refreshed).toEqual(['vertical-port-scan']);
    const listed = await call<{ items: Array<Json> }>('/api/v1/detectors');
    expect(listed.body.items[0]).toMatchObject({ enabled: false, params: { minPorts: 25 } });

    // What a restart does: a fresh engine from the configuration, then the stored settings.
    const fresh = f.h.detection();
    expect(fresh.engine.detector('vertical-port-scan').enabled).toBe(true);
    expect(await applyStoredSettings(fresh.engine, new DetectorSettingsStore(f.store), f.h.log)).toBe(1);
    expect(fresh.engine.detector('vertical-port-scan')).toMatchObject({
      enabled: false,
      intervalSeconds: 120,
      params: { minPorts: 25 },
    });
    // Later changes merge with the stored ones (parameters key by key).
    await call({ method: 'PATCH', url, payload: { params: { widePorts: 500 } } });
    expect(await new DetectorSettingsStore(f.store).get('vertical-port-scan')).toEqual({
      enabled: false,
      interval_seconds: 120,
      params: { minPorts: 25, widePorts: 500 },
    });

    const back = await call<Json>({
      method: 'PATCH',
      url,
      payload: { enabled: true, interval_seconds: 60, params: { minPorts: 15, widePorts: 1000 } },
    });
    expect(back.body).toMatchObject({
      enabled: true,
      interval_seconds: 60,
      params: { minPorts: 15, widePorts: 1000 },
    });
  });

  test("PATCH: invalid values are 400s naming the field, validated by the detector's own schema", async () => {
    for (const [payload, message] of [
      [{ params: { minPorts: 1 } }, /^params\.minPorts: Too small/],
      [{ params: { minPorts: 'many' } }, /^params\.minPorts: /],
      [{ params: { noSuchParam: 3 } }, /^params: Unrecognized key/],
      [{ interval_seconds: 5 }, /^interval_seconds: /],
      [{ enabled: 'yes' }, /^enabled: /],
      [{}, /nothing to change/],
    ] as const) {
      const r = await call({ method: 'PATCH', url, payload });
      expect(r.status, JSON.stringify(payload)).toBe(400);
      expect(r.body.message).toMatch(message);
    }
    expect(f.detection.engine.detector('vertical-port-scan').params).toMatchObject({ minPorts: 15 });
    expect(
      (await call({ method: 'PATCH', url: '/api/v1/detectors/no-such', payload: { enabled: false } })).status,
    ).toBe(404);
  });

  test('POST /api/v1/detections/run runs a backfill; bad requests are 400s', async () => {
    const { from, to } = f.range(60_000);
    const r = await call<Json>({
      method: 'POST',
      url: '/api/v1/detections/run',
      payload: { from, to, forward: false },
    });
    expect(r.status).toBe(200);
    expect(r.body.findings_updated).toBe(2);
    expect(
      (
        await call({
          method: 'POST',
          url: '/api/v1/detections/run',
          payload: { from, to, detectors: ['nope'] },
        })
      ).body.message,
    ).toMatch(/no detector "nope"/);
    expect(
      (
        await call({
          method: 'POST',
          url: '/api/v1/detections/run',
          payload: { from: '2026-01-01T00:00:00Z', to: '2026-03-01T00:00:00Z' },
        })
      ).status,
    ).toBe(400);
  });
});

describe('ATT&CK', () => {
  test('coverage: the techniques the detectors report, with finding counts', async () => {
    const r = await call<{
      attack_version: string;
      techniques: Array<Json>;
      tactics: Array<Json>;
    }>('/api/v1/attack');
    expect(r.status).toBe(200);
    expect(r.body.attack_version).toBe('16');
    // Every technique some detector reports is listed, sorted; only the two scans have findings.
    const reported = [...new Set(DETECTORS.flatMap((d) => d.techniques))].sort();
    expect(r.body.techniques.map((t) => t.id)).toEqual(reported);
    for (const t of r.body.techniques) {
      const expected = t.id === 'T1046' || t.id === 'T1595.001' ? 1 : 0;
      expect(t, String(t.id)).toMatchObject({ covered: true, findings: expected, open_findings: expected });
    }
    expect(r.body.techniques.find((t) => t.id === 'T1046')).toMatchObject({
      detectors: expect.arrayContaining(['vertical-port-scan', 'horizontal-sweep']),
    });
    expect(r.body.techniques.find((t) => t.id === 'T1595.001')).toMatchObject({
      name: 'Active Scanning: Scanning IP Blocks',
      tactic_ids: ['TA0043'],
    });
    const discovery = reported.filter((id) =>
      (TECHNIQUES[id as TechniqueId].tactics as readonly string[]).includes('TA0007'),
    );
    expect(r.body.tactics.find((t) => t.id === 'TA0007')).toMatchObject({
      shortname: 'discovery',
      techniques: discovery.length,
      findings: 1,
    });
    expect(r.body.tactics.find((t) => t.id === 'TA0011')).toMatchObject({
      shortname: 'command-and-control',
      findings: 0,
    });
    const none = await call<{ techniques: Array<{ findings: number }> }>(
      `/api/v1/attack?${qs({ from: '2020-01-01T00:00:00Z', to: '2020-01-02T00:00:00Z' })}`,
    );
    expect(none.status, JSON.stringify(none.body)).toBe(200);
    expect(none.body.techniques.every((t) => t.findings === 0)).toBe(true);
  });

  test('a Navigator layer (format 4.5, ATT&CK 16), scored and coloured by finding counts', async () => {
    const layer = await call<Json>('/api/v1/attack/navigator');
    expect(layer.status).toBe(200);
    expect(layer.body).toMatchObject({
      versions: { attack: '16', navigator: '4.9.1', layer: '4.5' },
      domain: 'enterprise-attack',
      gradient: { minValue: 0, maxValue: 1 },
    });
    const scored = layer.body.techniques
      .filter((t: Record<string, unknown>) => Number(t.score) > 0)
      .map((t: Record<string, unknown>) => [t.techniqueID, t.tactic, t.score]);
    expect(scored).toEqual([
      ['T1046', 'discovery', 1],
      ['T1595.001', 'reconnaissance', 1],
    ]);
    // Every technique a detector reports is on the layer.
    const reported = new Set<string>(DETECTORS.flatMap((d) => d.techniques));
    expect(new Set(layer.body.techniques.map((t: Record<string, unknown>) => t.techniqueID))).toEqual(
      reported,
    );
    const same = await call<Json>('/api/v1/attack?format=navigator');
    expect({ ...same.body, metadata: [] }).toEqual({ ...layer.body, metadata: [] });
  });
});

test('every answer above matched the schema the OpenAPI document declares for it', () => {
  expect(mismatches).toEqual([]);
});

async function redisUp(): Promise<boolean> {
  try {
    await redisPinger('redis://127.0.0.1:6379')();
    return true;
  } catch {
    return false;
  }
}
