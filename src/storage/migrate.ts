import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage, FlowsentryError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { queryRows, type Store } from './clickhouse.js';

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

/**
 * Applies migrations in order and records each in schema_migrations. Append-only: a recorded
 * migration whose file changed stops start-up.
 */
export async function migrate(store: Store, log: Logger, dir = MIGRATIONS_DIR): Promise<string[]> {
  const migrations = loadMigrations(dir);
  await store.client.command({
    query: `CREATE TABLE IF NOT EXISTS schema_migrations (
      version UInt32, name String, checksum String, applied_at DateTime('UTC') DEFAULT now()
    ) ENGINE = ReplacingMergeTree ORDER BY version`,
  });
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
    for (const statement of m.statements) {
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
export async function applyRetention(store: Store, retention: Retention, log: Logger): Promise<void> {
  const wanted: Array<[string, string, number]> = [
    ['flows', 'time_received', retention.flowsDays],
    ['flows_1m', 'time_bucket', retention.rollup1mDays],
    ['flows_1h', 'time_bucket', retention.rollup1hDays],
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
      query: `ALTER TABLE ${table} MODIFY TTL ${column} + toIntervalDay(${days})`,
      clickhouse_settings: { materialize_ttl_after_modify: 0 },
    });
    log.info({ table, days }, 'retention changed');
  }
}
