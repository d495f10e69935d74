import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage, FlowsentryError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { queryRows, type Store } from './clickhouse.js';
import { type ClusterOptions, clusterStatement, clusterStatements, storageTable } from './cluster.js';

/** migrations/ next to package.json (dist/storage/../../migrations or src/storage/../../migrations). */
export const MIGRATIONS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'migrations');

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly checksum: string;
  readonly statements: string[];
}

const FILE_PATTERN = /^(\d{4})_[a-z0-9_]+\.sql$/;

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const files = readdirSync(dir)
    .filter((f) => FILE_PATTERN.test(f))
    .sort();
  const seen = new Set<number>();
  return files.map((name) => {
    const version = Number(FILE_PATTERN.exec(name)![1]);
    if (seen.has(version))
      throw new FlowsentryError('MIGRATION_FAILED', `two migrations numbered ${version}`);
    seen.add(version);
    const sql = readFileSync(join(dir, name), 'utf8');
    return {
      version,
      name,
      checksum: createHash('sha256').update(sql).digest('hex'),
      statements: splitSql(sql),
    };
  });
}

/** Splits a migration into statements: `;` at the end of a line ends one; `--` lines are comments. */
export function splitSql(sql: string): string[] {
  const statements: string[] = [];
  let current: string[] = [];
  for (const line of sql.split('\n')) {
    if (/^\s*--/.test(line)) continue;
    current.push(line);
    if (/;\s*$/.test(line)) {
      const text = current.join('\n').trim().replace(/;\s*$/, '');
      if (text) statements.push(text);
      current = [];
    }
  }
  const rest = current.join('\n').trim();
  if (rest) statements.push(rest);
  return statements;
}

export const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
      version UInt32, name String, checksum String, applied_at DateTime('UTC') DEFAULT now()
    ) ENGINE = ReplacingMergeTree ORDER BY version`;

/**
 * The statements a migration runs: its file's, or on a cluster their ON CLUSTER form (cluster.ts).
 * The checksum is always the file's, so a schema is the same migration on one server or a cluster.
 */
export function migrationStatements(m: Migration, cluster: ClusterOptions | null): string[] {
  return cluster ? clusterStatements(m.statements, cluster) : m.statements;
}

/**
 * Applies migrations in order and records each in schema_migrations. Append-only: a recorded
 * migration whose file changed stops start-up. With `cluster`, every statement runs ON CLUSTER
 * (Replicated local tables, Distributed tables under the usual names: src/storage/cluster.ts).
 */
export async function migrate(
  store: Store,
  log: Logger,
  dir = MIGRATIONS_DIR,
  cluster: ClusterOptions | null = null,
): Promise<string[]> {
  const migrations = loadMigrations(dir);
  for (const query of cluster ? clusterStatement(MIGRATIONS_TABLE, cluster) : [MIGRATIONS_TABLE]) {
    await store.client.command({ query });
  }
  const applied = new Map(
    (
      await queryRows<{ version: number; name: string; checksum: string }>(
        store,
        'SELECT version, name, checksum FROM schema_migrations FINAL',
      )
    ).map((r) => [Number(r.version), r]),
  );
  const done: string[] = [];
  for (const m of migrations) {
    const previous = applied.get(m.version);
    if (previous) {
      if (previous.checksum !== m.checksum) {
        throw new FlowsentryError(
          'MIGRATION_FAILED',
          `migration ${m.name} changed after it was applied (recorded as ${previous.name}); add a new migration instead`,
        );
      }
      continue;
    }
    for (const statement of migrationStatements(m, cluster)) {
      try {
        // LowCardinality(IPv6) (exporter_address) needs this at CREATE time; nothing else depends on it.
        await store.client.command({
          query: statement,
          clickhouse_settings: { allow_suspicious_low_cardinality_types: 1 },
        });
      } catch (error) {
        throw new FlowsentryError('MIGRATION_FAILED', `migration ${m.name}: ${errorMessage(error)}`, {
          cause: error,
        });
      }
    }
    await store.client.insert({
      table: 'schema_migrations',
      values: [{ version: m.version, name: m.name, checksum: m.checksum }],
      format: 'JSONEachRow',
    });
    log.info({ migration: m.name }, 'migration applied');
    done.push(m.name);
  }
  return done;
}

export interface Retention {
  readonly flowsDays: number;
  readonly rollup1mDays: number;
  readonly rollup1hDays: number;
}

/**
 * Makes each table's TTL match the configuration. Only tables whose TTL differs are altered, and
 * without rewriting existing parts (expired parts are dropped by the next merge).
 */
export async function applyRetention(
  store: Store,
  retention: Retention,
  log: Logger,
  cluster: ClusterOptions | null = null,
): Promise<void> {
  // On a cluster the TTL is the local tables' (the Distributed ones hold no rows).
  const wanted: Array<[string, string, number]> = [
    [storageTable('flows', cluster), 'time_received', retention.flowsDays],
    [storageTable('flows_1m', cluster), 'time_bucket', retention.rollup1mDays],
    [storageTable('flows_1h', cluster), 'time_bucket', retention.rollup1hDays],
  ];
  const tables = await queryRows<{ name: string; engine_full: string }>(
    store,
    'SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()',
  );
  for (const [table, column, days] of wanted) {
    const engine = tables.find((t) => t.name === table)?.engine_full ?? '';
    const current = /TTL \S+ \+ toIntervalDay\((\d+)\)/.exec(engine)?.[1];
    if (current !== undefined && Number(current) === days) continue;
    await store.client.command({
      query: `ALTER TABLE ${table}${cluster ? ` ON CLUSTER ${cluster.cluster}` : ''} MODIFY TTL ${column} + toIntervalDay(${days})`,
      clickhouse_settings: { materialize_ttl_after_modify: 0 },
    });
    log.info({ table, days }, 'retention changed');
  }
}
