import type { FastifyInstance, InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { FindingUpdate } from '../../src/findings/store.js';
import { queryRows } from '../../src/storage/clickhouse.js';
import { ApiFixture, HOSTS, qs } from '../support/api.js';

/**
 * Auth and abuse, on the same real store as the route tests: tokens and scopes, rate limits that
 * count rejected requests too, body and URL limits, SQL injection in every filter, absurd ranges,
 * pagination while findings arrive, and secrets that never reach an answer.
 */

const ENV_TOKEN = 'env-token-7f3a9c2e51b04d68';
const READER = 'reader-token-2c8e61f0a9b34d17';
const WRITER = 'writer-token-9b1d47e3c60f28a5';
const CH_PASSWORD = 'clickhouse-pw-5e9a03d7';
const TOKENS = {
  token: ENV_TOKEN,
  tokens: [
    { name: 'reader', token: READER, scope: 'read-only' },
    { name: 'soar', token: WRITER, scope: 'read-write' },
  ],
};

let f: ApiFixture;
let app: FastifyInstance;
beforeAll(async () => {
  f = await ApiFixture.open();
  app = await f.app(TOKENS);
}, 180_000);
afterAll(async () => f?.close());

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function call(options: InjectOptions, target = app) {
  const r = await target.inject(options);
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(r.body) as Record<string, unknown>;
  } catch {
    // Not JSON (metrics, docs).
  }
  return { status: r.statusCode, body, raw: r.body, headers: r.headers };
}

const get = (url: string, token?: string, target = app) =>
  call({ method: 'GET', url, headers: token ? bearer(token) : {} }, target);

async function anyFindingId(): Promise<string> {
  const r = await get('/api/v1/findings?limit=1', READER);
  return (r.body.items as Array<{ id: string }>)[0]!.id;
}

describe('authentication and scopes', () => {
  test('missing or wrong tokens get 401 in the one error shape, on every route but /healthz', async () => {
    for (const url of [
      '/api/v1/findings',
      '/api/v1/flows/summary?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z',
      '/readyz',
      '/docs',
      '/openapi.json',
      '/api/v1/no-such-route',
    ]) {
      for (const headers of [
        {},
        bearer('wrong-token'),
        { authorization: `Basic ${Buffer.from(`x:${READER}`).toString('base64')}` },
        { authorization: READER },
      ]) {
        const r = await call({ method: 'GET', url, headers });
        expect(r.status, `${url} ${JSON.stringify(headers)}`).toBe(401);
        expect(r.body).toEqual({
          error: 'unauthorized',
          message: expect.stringMatching(/authorization header/),
        });
        expect(r.headers['www-authenticate']).toBe('Bearer realm="flowsentry"');
      }
    }
    expect((await get('/healthz')).status).toBe(200);
    // /metrics is public unless api.metricsAuth.
    expect((await get('/metrics')).status).toBe(200);
    // With a token, an unknown route is a 404.
    expect((await get('/api/v1/no-such-route', READER)).status).toBe(404);
  });

  test('a read-only token reads; PATCH, DELETE and POST need a read-write token (403)', async () => {
    const id = await anyFindingId();
    expect((await get(`/api/v1/findings/${id}`, READER)).status).toBe(200);
    const writes: InjectOptions[] = [
      { method: 'PATCH', url: `/api/v1/findings/${id}`, payload: { status: 'acknowledged' } },
      { method: 'PATCH', url: '/api/v1/detectors/vertical-port-scan', payload: { enabled: false } },
      { method: 'DELETE', url: '/api/v1/allowlist/00000000-0000-4000-8000-000000000000' },
      {
        method: 'POST',
        url: '/api/v1/detections/run',
        payload: { from: '2026-01-01T00:00:00Z', to: '2026-01-01T01:00:00Z' },
      },
    ];
    for (const w of writes) {
      const r = await call({ ...w, headers: bearer(READER) });
      expect(r.status, `${w.method} ${w.url}`).toBe(403);
      expect(r.body).toEqual({
        error: 'forbidden',
        message: `token "reader" is read-only; ${w.method} needs a read-write token`,
      });
    }
    expect(f.detection.engine.detector('vertical-port-scan').enabled).toBe(true);
    const ok = await call({
      method: 'PATCH',
      url: `/api/v1/findings/${id}`,
      payload: { status: 'acknowledged', user: 'carol' },
      headers: bearer(WRITER),
    });
    expect(ok.status).toBe(200);
    const env = await call({
      method: 'PATCH',
      url: `/api/v1/findings/${id}`,
      payload: { status: 'open' },
      headers: bearer(ENV_TOKEN),
    });
    expect(env.status).toBe(200);
    // The acting user is the token's name (with the user the client names, if any).
    const history = (env.body.history as Array<{ actor: string; to_status: string }>).slice(-2);
    expect(history).toEqual([
      expect.objectContaining({ actor: 'soar/carol', to_status: 'acknowledged' }),
      expect.objectContaining({ actor: 'api-token', to_status: 'open' }),
    ]);
  });

  test('api.metricsAuth puts /metrics behind the token; api.docsAuth false opens /docs and /openapi.json', async () => {
    const strict = await f.app({ ...TOKENS, metricsAuth: true });
    expect((await get('/metrics', undefined, strict)).status).toBe(401);
    expect((await get('/metrics', READER, strict)).status).toBe(200);
    const openDocs = await f.app({ ...TOKENS, docsAuth: false });
    expect((await get('/docs', undefined, openDocs)).status).toBe(200);
    const doc = await get('/openapi.json', undefined, openDocs);
    expect(doc.status).toBe(200);
    expect(doc.body.components).toMatchObject({
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } },
    });
    expect(doc.body.security).toEqual([{ bearerAuth: [] }]);
    expect((await get('/api/v1/findings', undefined, openDocs)).status).toBe(401);
  });

  test('with no token configured the API is open, as before', async () => {
    const open = await f.app();
    expect((await get('/api/v1/findings', undefined, open)).status).toBe(200);
    expect((await get('/openapi.json', undefined, open)).body.security).toBeUndefined();
  });
});

describe('limits', () => {
  test('429 after the limit, counted per token and per address, unauthenticated requests included', async () => {
    const limited = await f.app({ ...TOKENS, rateLimit: { max: 3, windowSeconds: 60 } });
    const from = (remoteAddress: string, headers: Record<string, string> = {}, url = '/api/v1/exporters') =>
      call({ method: 'GET', url, headers, remoteAddress }, limited);
    // Without a token: 401, 401, 401, then 429 (the auth check runs after the limiter).
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await from('10.9.0.1')).status);
    expect(statuses).toEqual([401, 401, 401, 429, 429]);
    const tooMany = await from('10.9.0.1');
    expect(tooMany.body).toEqual({
      error: 'rate_limited',
      message: expect.stringMatching(/^Rate limit exceeded/),
    });
    expect(Number(tooMany.headers['retry-after'])).toBeGreaterThan(0);
    // Wrong tokens share their address's budget; a large body is refused before it is read.
    expect((await from('10.9.0.1', bearer('guess-1'))).status).toBe(429);
    const body = await call(
      {
        method: 'PATCH',
        url: '/api/v1/detectors/x',
        payload: { params: { a: 'x'.repeat(200_000) } },
        remoteAddress: '10.9.0.1',
      },
      limited,
    );
    expect(body.status).toBe(429);
    // Another address has its own budget; a valid token from the limited address has its own too.
    expect((await from('10.9.0.2')).status).toBe(401);
    const reader = [];
    for (let i = 0; i < 4; i++) reader.push((await from('10.9.0.1', bearer(READER))).status);
    expect(reader).toEqual([200, 200, 200, 429]);
    expect((await from('10.9.0.3', bearer(READER))).status).toBe(429);
    expect((await from('10.9.0.1', bearer(WRITER))).status).toBe(200);
    // Liveness is never limited.
    expect((await from('10.9.0.1', {}, '/healthz')).status).toBe(200);
  });

  test('oversized bodies get 413 (401 first without a token), long URLs 414, other media types 415', async () => {
    const id = await anyFindingId();
    const big = { status: 'acknowledged', comment: 'x'.repeat(70_000) };
    const r = await call({
      method: 'PATCH',
      url: `/api/v1/findings/${id}`,
      payload: big,
      headers: bearer(WRITER),
    });
    expect(r).toMatchObject({ status: 413, body: { error: 'payload_too_large' } });
    expect((await call({ method: 'PATCH', url: `/api/v1/findings/${id}`, payload: big })).status).toBe(401);
    const long = await get(`/api/v1/findings?q=${'a'.repeat(9_000)}`, READER);
    expect(long).toMatchObject({ status: 414, body: { error: 'uri_too_long' } });
    const xml = await call({
      method: 'PATCH',
      url: `/api/v1/findings/${id}`,
      payload: '<status>resolved</status>',
      headers: { ...bearer(WRITER), 'content-type': 'application/xml' },
    });
    expect(xml).toMatchObject({ status: 415, body: { error: 'unsupported_media_type' } });
  });

  test('absurd ranges, limits and values are 400s', async () => {
    const bad = [
      `/api/v1/flows?${qs({ from: '0001-01-01T00:00:00Z', to: '9999-12-31T00:00:00Z' })}`,
      `/api/v1/flows/top?${qs({ from: '1970-01-01T00:00:00Z', to: '2200-01-01T00:00:00Z' })}`,
      `/api/v1/flows/timeseries?${qs({ from: '1970-01-01T00:00:00Z', to: '2200-01-01T00:00:00Z' })}`,
      `/api/v1/flows?${qs({ from: '2026-01-02T00:00:00Z', to: '2026-01-01T00:00:00Z' })}`,
      `/api/v1/flows?${qs({ from: '2026-13-45T00:00:00Z', to: '2026-01-01T00:00:00Z' })}`,
      `/api/v1/flows?${qs({ from: '2026-01-01T00:00:00Z', to: '2026-01-02T00:00:00Z', limit: 100_000 })}`,
      `/api/v1/flows?${qs({ from: '2026-01-01T00:00:00Z', to: '2026-01-02T00:00:00Z', limit: -1 })}`,
      `/api/v1/flows?${qs({ from: '2026-01-01T00:00:00Z', to: '2026-01-02T00:00:00Z', limit: 'all' })}`,
      `/api/v1/flows/top?${qs({ from: '2026-01-01T00:00:00Z', to: '2026-01-02T00:00:00Z', limit: 101 })}`,
      `/api/v1/flows/timeseries?${qs({ from: '2026-01-01T00:00:00Z', to: '2026-01-02T00:00:00Z', interval: '0' })}`,
      `/api/v1/flows/timeseries?${qs({ from: '2026-01-01T00:00:00Z', to: '2026-01-02T00:00:00Z', interval: '1s' })}`,
      `/api/v1/findings?${qs({ limit: 1_000_000 })}`,
      `/api/v1/findings?${qs({ from: '2026-01-02T00:00:00Z', to: '2026-01-01T00:00:00Z' })}`,
      `/api/v1/attack?${qs({ from: '2026-01-02T00:00:00Z', to: '2026-01-01T00:00:00Z' })}`,
      `/api/v1/flows?${qs({ from: '2026-01-01T00:00:00Z', to: '2026-01-02T00:00:00Z', sql: 'SELECT 1' })}`,
    ];
    for (const url of bad) {
      const r = await get(url, READER);
      expect(r.status, url).toBe(400);
      expect(r.body).toEqual({ error: 'bad_request', message: expect.any(String) });
    }
  });
});

describe('SQL injection', () => {
  const PAYLOADS = [
    "' OR '1'='1",
    "1' OR 1=1 --",
    "10.0.0.1'); DROP TABLE flows; --",
    '1; DROP TABLE findings',
    "' UNION SELECT * FROM system.users --",
    '{p0:String}',
    '{from:Int64}) OR (1=1',
    "\\'",
    '%27%20OR%201%3D1',
    '1e308',
    '-1',
    'NULL',
    '\u0000',
    "ä' --",
    `${'A'.repeat(300)}`,
  ];

  test('every filter of every endpoint: 400 or a harmless answer, never a store error or a 500', async () => {
    const { from, to } = f.range();
    const id = await anyFindingId();
    const endpoints: Array<[string, Record<string, string>, string[]]> = [
      [
        '/api/v1/flows',
        { from, to },
        [
          'from',
          'to',
          'ip',
          'src_ip',
          'dst_ip',
          'port',
          'src_port',
          'dst_port',
          'protocol',
          'exporter',
          'limit',
          'cursor',
        ],
      ],
      ['/api/v1/flows/top', { from, to }, ['by', 'metric', 'limit', 'ip', 'protocol', 'exporter']],
      ['/api/v1/flows/timeseries', { from, to }, ['interval', 'ip', 'port', 'protocol', 'exporter']],
      ['/api/v1/flows/summary', { from, to }, ['from', 'to', 'exporter']],
      [
        '/api/v1/findings',
        {},
        [
          'from',
          'to',
          'detector',
          'severity',
          'status',
          'technique',
          'tactic',
          'ip',
          'exporter',
          'q',
          'sort',
          'cursor',
          'limit',
        ],
      ],
      [`/api/v1/findings/${id}/flows`, {}, ['cursor', 'limit']],
      ['/api/v1/attack', {}, ['from', 'to', 'format']],
      ['/api/v1/allowlist', {}, ['active']],
    ];
    const seen = new Set<number>();
    for (const [path, base, fields] of endpoints) {
      for (const field of fields) {
        for (const payload of PAYLOADS) {
          const url = `${path}?${qs({ ...base, [field]: payload })}`;
          const r = await get(url, READER);
          seen.add(r.status);
          expect([200, 400], `${url} → ${r.status} ${r.raw.slice(0, 200)}`).toContain(r.status);
          if (r.status === 400) expect(r.body).toEqual({ error: 'bad_request', message: expect.any(String) });
          // The only free-text filter finds nothing with these: no title contains them.
          if (r.status === 200 && field === 'q') expect(r.body.items).toEqual([]);
        }
      }
    }
    for (const payload of PAYLOADS) {
      const r = await get(`/api/v1/findings/${encodeURIComponent(payload)}`, READER);
      // Path parameters longer than 128 characters are refused by the router (414).
      expect([400, 404, 414], payload).toContain(r.status);
      expect(r.body.error).toMatch(/^(bad_request|not_found|uri_too_long)$/);
    }
    // Malformed escapes never reach a route, and still get the one error shape.
    expect(await get('/api/v1/findings/%E4%27', READER)).toMatchObject({
      status: 400,
      body: { error: 'bad_request', message: 'the URL is not validly percent-encoded' },
    });
    expect(seen.has(200) && seen.has(400)).toBe(true);
    expect(await queryRows(f.store, 'SELECT count() AS n FROM flows')).toEqual([{ n: expect.any(Number) }]);
    expect(
      Number((await queryRows<{ n: number }>(f.store, 'SELECT count() AS n FROM flows'))[0]!.n),
    ).toBeGreaterThanOrEqual(f.records);
    expect(
      Number((await queryRows<{ n: number }>(f.store, 'SELECT count() AS n FROM findings FINAL'))[0]!.n),
    ).toBeGreaterThan(0);
  });

  test('bodies: text is stored as text, parameters are validated by the detector schema', async () => {
    const id = await anyFindingId();
    const comment = "'); DROP TABLE finding_events; -- {id:String}";
    const r = await call({
      method: 'PATCH',
      url: `/api/v1/findings/${id}`,
      payload: { status: 'acknowledged', comment },
      headers: bearer(WRITER),
    });
    expect(r.status).toBe(200);
    expect((r.body.history as Array<{ comment: string }>).at(-1)!.comment).toBe(comment);
    for (const user of ["x' OR '1'='1", 'a'.repeat(65), 'robert"); --']) {
      const u = await call({
        method: 'PATCH',
        url: `/api/v1/findings/${id}`,
        payload: { status: 'open', user },
        headers: bearer(WRITER),
      });
      expect(u.status, user).toBe(400);
    }
    for (const params of [
      { minPorts: '15; DROP TABLE flows' },
      { minPorts: { $gt: 1 } },
      { "minPorts') --": 3 },
    ]) {
      const p = await call({
        method: 'PATCH',
        url: '/api/v1/detectors/vertical-port-scan',
        payload: { params },
        headers: bearer(WRITER),
      });
      expect(p.status, JSON.stringify(params)).toBe(400);
      expect(p.body.message).toMatch(/^params/);
    }
    await call({
      method: 'PATCH',
      url: `/api/v1/findings/${id}`,
      payload: { status: 'open' },
      headers: bearer(WRITER),
    });
  });
});

describe('pagination while findings arrive', () => {
  const detector = { id: 'pagination-test', cooldownMs: 60_000 };
  const update = (key: string, i: number): FindingUpdate => ({
    key,
    title: `activity ${key}`,
    severity: 'low',
    confidence: 0.5,
    techniqueIds: ['T1046'],
    tacticIds: ['TA0007'],
    srcIp: `10.77.0.${i % 250}`,
    dstIp: null,
    relatedIps: [],
    firstSeen: f.firstMs + ((i * 7919) % 600) * 1000,
    lastSeen: f.firstMs + ((i * 7919) % 600) * 1000 + 5_000,
    flows: 1,
    bytes: 100,
    packets: 1,
    exporters: [HOSTS.exporter],
    evidence: { i },
  });
  let run = 0;
  const record = (keys: Array<[string, number]>) =>
    f.detection.findings.record(
      detector,
      keys.map(([k, i]) => update(k, i)),
      { runId: `r${++run}`, mode: 'backfill', windowKey: `w${run}`, forward: false },
    );

  test.each(['-created_at', 'created_at', 'first_seen', '-first_seen'])(
    'sort %s: no duplicates and no misses across pages while findings are created and updated',
    async (sort) => {
      const prefix = `p${sort}`;
      const initial = Array.from({ length: 23 }, (_, i) => [`${prefix}-${i}`, i] as [string, number]);
      const made = await record(initial);
      expect(made.created).toHaveLength(23);
      const seen: string[] = [];
      let cursor: string | null = null;
      let next = 100;
      for (let page = 0; page < 50; page++) {
        const url = `/api/v1/findings?${qs({ detector: detector.id, q: prefix, sort, limit: 4, cursor: cursor ?? undefined })}`;
        const r = await get(url, READER);
        expect(r.status).toBe(200);
        seen.push(...(r.body.items as Array<{ id: string }>).map((x) => x.id));
        cursor = r.body.next_cursor as string | null;
        if (!cursor) break;
        // Between pages: new activity, updates of findings already listed and not yet listed, an analyst action.
        await record([
          [`${prefix}-new-${next}`, next++],
          [`${prefix}-new-${next}`, next++],
          [`${prefix}-${page}`, page],
          [`${prefix}-${22 - page}`, 22 - page],
        ]);
        await f.detection.findings.setStatus(made.created[page % 23]!, 'acknowledged', 'test', '');
      }
      expect(cursor).toBeNull();
      expect(new Set(seen).size).toBe(seen.length);
      for (const id of made.created) expect(seen).toContain(id);
    },
  );
});

test('secrets (tokens, passwords) never appear in an answer', async () => {
  const secretive = await f.app(TOKENS, {
    secrets: [CH_PASSWORD],
    redis: async () => {
      throw new Error(`WRONGPASS for redis://:${CH_PASSWORD}@127.0.0.1:6379 with ${WRITER}`);
    },
  });
  const { from, to } = f.range();
  const id = await anyFindingId();
  const urls = [
    '/healthz',
    '/readyz',
    '/metrics',
    '/openapi.json',
    '/docs',
    '/api/v1/collector',
    '/api/v1/exporters',
    '/api/v1/templates',
    '/api/v1/detectors',
    '/api/v1/attack',
    '/api/v1/attack/navigator',
    '/api/v1/allowlist',
    `/api/v1/findings/${id}`,
    `/api/v1/findings?q=${encodeURIComponent(WRITER)}`,
    `/api/v1/flows?${qs({ from, to, exporter: WRITER })}`,
    `/api/v1/flows/top?${qs({ from, to, by: CH_PASSWORD })}`,
  ];
  const readyz = await get('/readyz', READER, secretive);
  expect(readyz.status).toBe(503);
  expect(readyz.raw).toContain('WRONGPASS');
  for (const url of urls) {
    for (const token of [READER, WRITER, undefined, `${ENV_TOKEN}x`]) {
      const r = await get(url, token, secretive);
      for (const secret of [ENV_TOKEN, READER, WRITER, CH_PASSWORD]) {
        expect(r.raw.includes(secret), `${url} shows a secret`).toBe(false);
      }
    }
  }
});
