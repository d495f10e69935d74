import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  type ClickHouseClient,
  ClickHouseLogLevel,
  type ClickHouseSettings,
  createClient,
} from '@clickhouse/client';
import { errorMessage, FlowsentryError } from '../common/errors.js';

export interface ClickHouseConfig {
  /** http(s)://host:port of a ClickHouse server; empty for the embedded engine. */
  readonly url: string;
  readonly user: string;
  readonly password: string;
  readonly database: string;
}

export interface Store {
  readonly client: ClickHouseClient;
  /** true for chDB in this process, false for a server. */
  readonly embedded: boolean;
  readonly database: string;
  /** Where the embedded engine keeps its data (undefined for a server). */
  readonly path: string | undefined;
  close(): Promise<void>;
}

/** Settings both backends get on every query, so results look the same (reference.md §3.2). */
const COMMON_SETTINGS: ClickHouseSettings = {
  output_format_json_quote_64bit_integers: 0,
  date_time_output_format: 'iso',
};

/**
 * Opens the store: a ClickHouse server when `url` is set, otherwise chDB under `<dataDir>/clickhouse`
 * through @clickhouse/client's connection hook, so the same SQL and migrations run on both. The
 * database is created if missing and made the default (chDB ignores the client's `database` option,
 * so the session gets `USE`).
 */
export async function openStore(config: ClickHouseConfig, dataDir: string): Promise<Store> {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(config.database)) {
    throw new FlowsentryError(
      'CONFIG_INVALID',
      `CLICKHOUSE_DATABASE: invalid database name "${config.database}"`,
    );
  }
  if (config.url) return openServer(config);
  const path = resolve(join(dataDir, 'clickhouse'));
  mkdirSync(path, { recursive: true });
  let createChdbConnection: (opts: { path: string }) => unknown;
  try {
    ({ createChdbConnection } = (await import('chdb/connection')) as unknown as {
      createChdbConnection: (opts: { path: string }) => unknown;
    });
  } catch (error) {
    throw new FlowsentryError(
      'STORAGE_UNAVAILABLE',
      `embedded ClickHouse (chdb) could not be loaded: ${errorMessage(error)}; set CLICKHOUSE_URL to use a server`,
      { cause: error },
    );
  }
  const client = createClient({
    connection: createChdbConnection({ path }),
    clickhouse_settings: COMMON_SETTINGS,
    log: { level: ClickHouseLogLevel.OFF },
  } as Parameters<typeof createClient>[0]);
  try {
    await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${config.database}` });
    await client.command({ query: `USE ${config.database}` });
  } catch (error) {
    await client.close().catch(() => undefined);
    throw new FlowsentryError(
      'STORAGE_UNAVAILABLE',
      `embedded ClickHouse at ${path}: ${errorMessage(error)}`,
      {
        cause: error,
      },
    );
  }
  return { client, embedded: true, database: config.database, path, close: () => client.close() };
}

async function openServer(config: ClickHouseConfig): Promise<Store> {
  const base = {
    url: config.url,
    username: config.user,
    password: config.password,
    request_timeout: 300_000,
    clickhouse_settings: COMMON_SETTINGS,
    // Failures reach our structured logs through the callers; the client's console lines would duplicate them.
    log: { level: ClickHouseLogLevel.OFF },
  };
  const bootstrap = createClient(base);
  try {
    await bootstrap.command({ query: `CREATE DATABASE IF NOT EXISTS ${config.database}` });
  } catch (error) {
    throw new FlowsentryError(
      'STORAGE_UNAVAILABLE',
      `ClickHouse server ${redactUrl(config.url)}: ${errorMessage(error)}`,
      { cause: error },
    );
  } finally {
    await bootstrap.close();
  }
  const client = createClient({ ...base, database: config.database });
  return { client, embedded: false, database: config.database, path: undefined, close: () => client.close() };
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/** Runs a SELECT and returns its rows as objects. */
export async function queryRows<T>(
  store: Store,
  query: string,
  params: Record<string, unknown> = {},
): Promise<T[]> {
  const result = await store.client.query({ query, format: 'JSONEachRow', query_params: params });
  return (await result.json()) as T[];
}
