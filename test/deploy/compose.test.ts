import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { REPO_ROOT } from '../support/service.js';

/**
 * The deployment files: docker-compose.yml (and the cluster example under docs/cluster/) validated by
 * Docker Compose itself (`config` needs no engine), then the resolved configuration checked for what
 * the deployment promises; the Dockerfile read for its stages, user and ports. No image is built and
 * no container started here (no Docker engine on the machines these tests run on).
 */

/** `docker compose` (v2 plugin) or `docker-compose` (v1, Debian's package), whichever runs. */
function composeCommand(): string[] | null {
  for (const command of [['docker', 'compose'], ['docker-compose']]) {
    const r = spawnSync(command[0]!, [...command.slice(1), 'version'], { encoding: 'utf8' });
    if (r.status === 0) return command;
  }
  return null;
}

const COMPOSE = composeCommand();
const REQUIRED = process.env.FLOWSENTRY_REQUIRE_PEERS === '1';

function compose(file: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const [command, ...prefix] = COMPOSE!;
  const r = spawnSync(command!, [...prefix, '-f', join(REPO_ROOT, file), ...args], {
    encoding: 'utf8',
    cwd: REPO_ROOT,
    // Defaults in the files apply; nothing from the developer's environment leaks in.
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  ports?: Array<string | { target: number; published: number | string; protocol: string }>;
  volumes?: Array<string | { source: string; target: string; type: string }>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  profiles?: string[];
}

if (REQUIRED) {
  test('Docker Compose is installed (FLOWSENTRY_REQUIRE_PEERS=1; .ci/run installs docker-compose)', () => {
    expect(COMPOSE).not.toBeNull();
  });
}

describe.skipIf(COMPOSE === null)('docker-compose.yml, as Docker Compose resolves it', () => {
  const resolved = () => {
    const r = compose('docker-compose.yml', '--profile', 'workers', 'config');
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    return parse(r.stdout) as { services: Record<string, Service>; volumes: Record<string, unknown> };
  };

  test('config -q accepts both compose files', () => {
    for (const file of ['docker-compose.yml', 'docs/cluster/docker-compose.yml']) {
      const r = compose(file, 'config', '-q');
      expect(r.stderr, file).toBe('');
      expect(r.status, file).toBe(0);
    }
  });

  test('services, pinned images, health checks and start order', () => {
    const { services } = resolved();
    expect(Object.keys(services).sort()).toEqual(
      ['clickhouse', 'flowsentry', 'flowsentry-worker', 'grafana', 'prometheus', 'redis'].sort(),
    );
    for (const [name, s] of Object.entries(services)) {
      // A tag on every image, never latest.
      expect(s.image, name).toMatch(/^[a-z0-9./-]+:(?!latest$)[A-Za-z0-9._-]+$/);
    }
    expect(services.clickhouse!.image).toMatch(/^clickhouse\/clickhouse-server:\d+\.\d+/);
    expect(services.clickhouse!.healthcheck!.test).toContain('http://127.0.0.1:8123/ping');
    expect(services.redis!.healthcheck!.test).toEqual(['CMD', 'redis-cli', 'ping']);
    for (const name of ['flowsentry', 'flowsentry-worker']) {
      expect(services[name]!.depends_on, name).toMatchObject({
        clickhouse: { condition: 'service_healthy' },
        redis: { condition: 'service_healthy' },
      });
    }
    expect(services['flowsentry-worker']!.profiles).toEqual(['workers']);
  });

  test('ClickHouse has the flowsentry user and database; Redis keeps every key and an append-only file', () => {
    const { services } = resolved();
    expect(services.clickhouse!.environment).toMatchObject({
      CLICKHOUSE_DB: 'flowsentry',
      CLICKHOUSE_USER: 'flowsentry',
    });
    expect(services.clickhouse!.environment!.CLICKHOUSE_PASSWORD).not.toBe('');
    const redis = services.redis!.command!.join(' ');
    expect(redis).toContain('--appendonly yes');
    expect(redis).toContain('--maxmemory-policy noeviction');
  });

  test('flowsentry: built here, ports published, pointed at ClickHouse and Redis with the same credentials', () => {
    const { services } = resolved();
    const f = services.flowsentry!;
    expect(f.build).toBeDefined();
    const published = (f.ports ?? []).map((p) =>
      typeof p === 'string' ? p : `${p.published}:${p.target}/${p.protocol}`,
    );
    expect(published.sort()).toEqual(['2055:2055/udp', '4739:4739/udp', '8080:8080/tcp']);
    expect(f.environment).toMatchObject({
      CLICKHOUSE_URL: 'http://clickhouse:8123',
      REDIS_URL: 'redis://redis:6379',
      CLICKHOUSE_USER: services.clickhouse!.environment!.CLICKHOUSE_USER,
      CLICKHOUSE_PASSWORD: services.clickhouse!.environment!.CLICKHOUSE_PASSWORD,
      CLICKHOUSE_DATABASE: services.clickhouse!.environment!.CLICKHOUSE_DB,
      FLOWSENTRY_LISTEN_HTTP: '0.0.0.0:8080',
    });
    // One SIEM forwarder per store: the worker has no destination.
    expect(services['flowsentry-worker']!.environment!.FLOWSENTRY_SYSLOG_URL).toBeUndefined();
    expect(services['flowsentry-worker']!.ports ?? []).toEqual([]);
  });

  test('Grafana: the plugin pinned, the provisioning and dashboards mounted, every variable the provisioning reads set', () => {
    const { services } = resolved();
    const g = services.grafana!;
    expect(g.environment!.GF_PLUGINS_PREINSTALL_SYNC).toMatch(
      /^grafana-clickhouse-datasource@\d+\.\d+\.\d+$/,
    );
    // Compose v1 prints `source:target:ro`, v2 an object.
    const mounts = (g.volumes ?? []).map((v) =>
      typeof v === 'string' ? v.replace(/:(ro|rw)$/, '') : `${v.source}:${v.target}`,
    );
    expect(mounts).toContain(`${join(REPO_ROOT, 'deploy/grafana/provisioning')}:/etc/grafana/provisioning`);
    expect(mounts).toContain(`${join(REPO_ROOT, 'dashboards')}:/var/lib/grafana/dashboards/flowsentry`);
    const datasources = readFileSync(
      join(REPO_ROOT, 'deploy/grafana/provisioning/datasources/flowsentry.yaml'),
      'utf8',
    );
    const used = [...datasources.matchAll(/\$\{([A-Z_]+)\}/g)].map((m) => m[1]!);
    expect(used.length).toBeGreaterThan(0);
    for (const name of used) expect(g.environment![name], name).toBeDefined();
    expect(g.environment!.CLICKHOUSE_HOST).toBe('clickhouse');
    const provider = parse(
      readFileSync(join(REPO_ROOT, 'deploy/grafana/provisioning/dashboards/flowsentry.yaml'), 'utf8'),
    ) as { providers: Array<{ type: string; options: { path: string } }> };
    expect(provider.providers[0]).toMatchObject({
      type: 'file',
      options: { path: '/var/lib/grafana/dashboards/flowsentry' },
    });
    // Prometheus scrapes the port flowsentry listens on.
    const prometheus = readFileSync(join(REPO_ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8');
    const port = services.flowsentry!.environment!.FLOWSENTRY_LISTEN_HTTP!.split(':')[1];
    expect(
      (parse(prometheus) as { scrape_configs: Array<{ static_configs: Array<{ targets: string[] }> }> })
        .scrape_configs[0]!.static_configs[0]!.targets,
    ).toEqual([`flowsentry:${port}`]);
  });

  test('the cluster example: 2 shards x 2 replicas with their macros, 3 Keeper nodes, flowsentry ON CLUSTER', () => {
    const r = compose('docs/cluster/docker-compose.yml', 'config');
    expect(r.status).toBe(0);
    const { services } = parse(r.stdout) as { services: Record<string, Service> };
    const servers = Object.entries(services).filter(([, s]) =>
      s.image?.startsWith('clickhouse/clickhouse-server'),
    );
    expect(servers.map(([, s]) => `${s.environment!.SHARD}/${s.environment!.REPLICA}`).sort()).toEqual([
      '1/ch-s1r1',
      '1/ch-s1r2',
      '2/ch-s2r1',
      '2/ch-s2r2',
    ]);
    const keepers = Object.values(services).filter((s) =>
      s.image?.startsWith('clickhouse/clickhouse-keeper'),
    );
    expect(keepers.map((s) => s.environment!.KEEPER_SERVER_ID).sort()).toEqual(['1', '2', '3']);
    expect(services.flowsentry!.environment).toMatchObject({ CLICKHOUSE_CLUSTER: 'flowsentry' });
    // The servers' remote_servers names the same cluster and lists exactly these replicas.
    const xml = readFileSync(join(REPO_ROOT, 'docs/cluster/cluster.xml'), 'utf8');
    expect(xml).toContain('<flowsentry>');
    expect([...xml.matchAll(/<host>(ch-[^<]+)<\/host>/g)].map((m) => m[1]).sort()).toEqual(
      servers.map(([name]) => name).sort(),
    );
  });
});

describe('Dockerfile', () => {
  const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('#'));

  test('two stages; the runtime one installs production dependencies only and runs as a non-root user', () => {
    const froms = instructions.filter((l) => l.startsWith('FROM '));
    expect(froms).toHaveLength(2);
    // Pinned, glibc-based Node 20 (chDB has no musl build).
    for (const f of froms) expect(f).toMatch(/^FROM node:20\.\d+\.\d+-bookworm-slim/);
    const runtime = instructions.slice(instructions.indexOf(froms[1]!));
    expect(runtime.some((l) => /^RUN npm ci --omit=dev\b/.test(l))).toBe(true);
    expect(runtime.some((l) => l.includes('COPY --from=build /src/dist'))).toBe(true);
    expect(runtime.filter((l) => l.startsWith('USER ')).at(-1)).toBe('USER node');
    expect(
      runtime
        .find((l) => l.startsWith('EXPOSE '))!
        .split(/\s+/)
        .slice(1)
        .sort(),
    ).toEqual(['2055/udp', '4739/udp', '8080/tcp']);
    expect(runtime.find((l) => l.startsWith('ENTRYPOINT '))).toBe('ENTRYPOINT ["node", "dist/cli.js"]');
    expect(runtime.find((l) => l.startsWith('HEALTHCHECK '))).toContain('http://127.0.0.1:8080/healthz');
  });

  test('the files the service reads at run time are copied: migrations next to dist (MIGRATIONS_DIR)', () => {
    expect(instructions).toContain('COPY migrations ./migrations');
    expect(instructions).toContain('COPY dashboards ./dashboards');
    expect(instructions).toContain('COPY package.json package-lock.json ./');
  });
});
