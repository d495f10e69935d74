import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { DETECTORS } from '../../src/detect/registry.js';
import { CLI, type RunningService, startService } from '../support/service.js';
import { tempDir } from '../support/temp.js';

/** The API of the real service (flowsentry serve from dist/) over HTTP, with tokens. */

const scratch = tempDir();
const running: RunningService[] = [];
afterAll(async () => {
  await Promise.all(running.map((s) => s.stop()));
  scratch.remove();
});

const ENV_TOKEN = 'e2e-env-token-51c9a7d3e08b';
const READER = 'e2e-reader-token-0d6f2b9a7c41';
const AUTOMATION = 'e2e-automation-token-8a3e5c1f9b27';
const configFile = join(scratch.path, 'tokens.yaml');
writeFileSync(
  configFile,
  [
    'api:',
    '  tokens:',
    `    - { name: analyst, token: ${READER}, scope: read-only }`,
    `    - { name: automation, token: ${AUTOMATION}, scope: read-write }`,
    '',
  ].join('\n'),
);

async function service(name: string, env: Record<string, string>, httpHost?: string) {
  const s = await startService({ dataDir: join(scratch.path, name), env, ...(httpHost ? { httpHost } : {}) });
  running.push(s);
  return s;
}

async function request(s: RunningService, method: string, path: string, token?: string, body?: unknown) {
  const response = await fetch(`${s.http}${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  return {
    status: response.status,
    body: JSON.parse(text) as Record<string, unknown>,
    headers: response.headers,
  };
}

describe('flowsentry serve with API tokens', () => {
  test('tokens over HTTP: 401 without, scopes enforced, detector changes survive a restart, the CLI hands runs over with its token', async () => {
    const env = { FLOWSENTRY_API_TOKEN: ENV_TOKEN, FLOWSENTRY_CONFIG: configFile };
    const s = await service('tokens', env);
    expect((await fetch(`${s.http}/healthz`)).status).toBe(200);
    expect((await fetch(`${s.http}/metrics`)).status).toBe(200);

    const anonymous = await request(s, 'GET', '/api/v1/findings');
    expect(anonymous.status).toBe(401);
    expect(anonymous.body).toMatchObject({ error: 'unauthorized' });
    expect(anonymous.headers.get('www-authenticate')).toBe('Bearer realm="flowsentry"');
    expect((await request(s, 'GET', '/api/v1/findings', 'not-a-token')).status).toBe(401);
    expect((await request(s, 'GET', '/api/v1/findings', READER)).body).toEqual({
      items: [],
      next_cursor: null,
    });
    expect((await request(s, 'GET', '/readyz', READER)).body).toMatchObject({ status: 'ready' });
    expect((await fetch(`${s.http}/docs`)).status).toBe(401);
    expect((await fetch(`${s.http}/docs`, { headers: { authorization: `Bearer ${READER}` } })).status).toBe(
      200,
    );

    const denied = await request(s, 'PATCH', '/api/v1/detectors/vertical-port-scan', READER, {
      enabled: false,
    });
    expect(denied).toMatchObject({ status: 403, body: { error: 'forbidden' } });
    const changed = await request(s, 'PATCH', '/api/v1/detectors/vertical-port-scan', ENV_TOKEN, {
      enabled: false,
      params: { minPorts: 30 },
    });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({ enabled: false, params: { minPorts: 30 } });

    // The CLI finds the service and hands the backfill over with the read-write token of the file.
    const detect = spawnSync(
      process.execPath,
      [CLI, 'detect', '--from', '2026-01-01T00:00:00Z', '--to', '2026-01-01T01:00:00Z'],
      {
        env: {
          ...process.env,
          FLOWSENTRY_DATA_DIR: s.dataDir,
          FLOWSENTRY_LISTEN_HTTP: s.http.replace('http://', ''),
          FLOWSENTRY_CONFIG: configFile,
          FLOWSENTRY_API_TOKEN: '',
        },
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(detect.stderr).toContain('handing the run to the service');
    expect(detect.status, detect.stdout + detect.stderr).toBe(0);
    // The service ran it with its settings: every enabled detector, not the one just disabled.
    const ran = JSON.parse(detect.stdout) as { windows: number; detectors: Array<{ id: string }> };
    expect(ran.windows).toBeGreaterThan(0);
    expect(ran.detectors.map((d) => d.id)).toEqual(
      DETECTORS.map((d) => d.id).filter((id) => id !== 'vertical-port-scan'),
    );

    expect(await s.stop()).toBe(0);
    for (const secret of [ENV_TOKEN, READER, AUTOMATION]) expect(s.output()).not.toContain(secret);

    const again = await service('tokens', env);
    const detectors = await request(again, 'GET', '/api/v1/detectors', READER);
    const items = detectors.body.items as Array<{ id: string; enabled: boolean }>;
    expect(items.map((d) => d.id)).toEqual(DETECTORS.map((d) => d.id));
    expect(items.find((d) => d.id === 'vertical-port-scan')).toMatchObject({
      enabled: false,
      params: expect.objectContaining({ minPorts: 30 }),
    });
    expect(items.filter((d) => !d.enabled).map((d) => d.id)).toEqual(['vertical-port-scan']);
    await again.stop();
  });

  test('no token and an address beyond loopback: start-up warns, the API stays open', async () => {
    const s = await service('open', {}, '0.0.0.0');
    expect((await request(s, 'GET', '/api/v1/detectors')).status).toBe(200);
    expect(s.output()).toContain('the API has no token and listens beyond loopback');
    await s.stop();
  });
});
