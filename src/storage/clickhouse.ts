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

/**
 * Settings both backends get on every query, so results look the same: servers before 25.8 quote
 * 64-bit integers in JSON by default, chDB does not (ClickHouse docs, format settings,
 * output_format_json_quote_64bit_integers).
 */
const COMMON_SETTINGS: ClickHouseSettings = {
  output_format_json_quote_64bit_integers: 0,
  date_time_output_format: 'iso',
};

/**
 * Opens the store: a ClickHouse server when `url` is set, otherwise chDB under `<dataDir>/clickhouse`
 * through @clickhouse/client's connection hook, so the same SQL and migrations run on both. The
 * database is created if missing and made the default (chDB ignores the client's `database` option,
 * so the session gets `USE`). With `cluster` (storage.cluster.name; servers only) the database is
 * created ON CLUSTER.
 */
export async function openStore(config: ClickHouseConfig, dataDir: string, cluster?: string): Promise<Store> {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(config.database)) {
    throw new FlowsentryError(
      'CONFIG_INVALID',
      `CLICKHOUSE_DATABASE: invalid database name "${config.database}"`,
    );
  }
  if (config.url) return openServer(config, cluster);
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
  let connection: unknown;
  try {
    connection = createChdbConnection({ path });
  } catch (error) {
    // chDB reports a data directory locked by another process only on stderr ("Cannot lock file
    // .../status"); the error itself says it could not connect.
    const locked = (error as { code?: unknown }).code === 'CHDB_CONNECTION';
    throw new FlowsentryError(
      locked ? 'STORAGE_LOCKED' : 'STORAGE_UNAVAILABLE',
      locked
        ? `cannot open the embedded store at ${path}: another process holds it (a running \`flowsentry serve\`?); ` +
            'stop it, or point every process at one ClickHouse server (CLICKHOUSE_URL)'
        : `embedded ClickHouse at ${path}: ${errorMessage(error)}`,
      { cause: error },
    );
  }
  const client = createClient({
    connection,
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

async function openServer(config: ClickHouseConfig, cluster?: string): Promise<Store> {
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
    await bootstrap.command({
      query: `CREATE DATABASE IF NOT EXISTS ${config.database}${cluster ? ` ON CLUSTER ${cluster}` : ''}`,
    });
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

export interface QueryOptions {
  readonly params?: Record<string, unknown>;
  /** Seconds after which the engine stops the query (max_execution_time); 0 or absent: no limit. */
  readonly timeoutSeconds?: number;
  /** Refuse anything but reads (readonly = 1): what detectors and the API run. */
  readonly readonly?: boolean;
  /** Further settings for this query only. */
  readonly settings?: Readonly<Record<string, number | string>>;
  /** Abandons the query (a server cancels it; the embedded engine may finish it in the background). */
  readonly signal?: AbortSignal;
}

/**
 * Runs a SELECT and returns its rows as objects of type T (JSONEachRow; 64-bit integers as numbers,
 * times as ISO strings, the same from both backends). Parameters are ClickHouse query parameters
 * (`{name:Type}` in the SQL), never spliced into the text.
 *
 * Per-query settings go into a SETTINGS clause appended to the statement, not into the client's
 * settings: the embedded connection turns client settings into `SET` statements on its one session,
 * where they would outlive the query (a readonly or a time limit meant for one detector query would
 * then apply to the writer's inserts). `sql` must therefore end without a SETTINGS or FORMAT clause.
 */
export async function queryRows<T>(
  store: Store,
  query: string,
  params: Record<string, unknown> = {},
  options: Omit<QueryOptions, 'params'> = {},
): Promise<T[]> {
  const settings = querySettings(options);
  const result = await store.client.query({
    query: settings ? `${query.trimEnd().replace(/;$/, '')}\nSETTINGS ${settings}` : query,
    format: 'JSONEachRow',
    query_params: params,
    ...(options.signal ? { abort_signal: options.signal } : {}),
  });
  return (await result.json()) as T[];
}

/** queryRows with everything in one options object. */
export function select<T>(store: Store, query: string, options: QueryOptions = {}): Promise<T[]> {
  const { params = {}, ...rest } = options;
  return queryRows<T>(store, query, params, rest);
}

function querySettings(options: Omit<QueryOptions, 'params'>): string {
  const entries: Array<[string, number | string]> = [];
  if (options.readonly) entries.push(['readonly', 1]);
  if (options.timeoutSeconds && options.timeoutSeconds > 0) {
    entries.push(['max_execution_time', options.timeoutSeconds]);
    // Fail rather than return a partial result when the limit is reached.
    entries.push(['timeout_overflow_mode', 'throw']);
  }
  for (const [name, value] of Object.entries(options.settings ?? {})) entries.push([name, value]);
  return entries
    .map(([name, value]) => {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`invalid setting name ${JSON.stringify(name)}`);
      if (typeof value === 'number') {
        if (!Number.isFinite(value)) throw new Error(`invalid value for setting ${name}`);
        return `${name} = ${value}`;
      }
      return `${name} = '${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
    })
    .join(', ');
}

/** Inserts rows given as objects (JSONEachRow): findings, runs, events; small volumes only. */
export async function insertRows(store: Store, table: string, rows: readonly object[]): Promise<void> {
  if (rows.length === 0) return;
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(table)) throw new Error(`invalid table name ${JSON.stringify(table)}`);
  await store.client.insert({ table, values: rows as object[], format: 'JSONEachRow' });
}
