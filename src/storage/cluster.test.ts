import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { tempDir } from '../../test/support/temp.js';
import { silentLogger } from '../common/logger.js';
import { configSchema } from '../config/schema.js';
import { openStore, queryRows, type Store } from './clickhouse.js';
import {
  type ClusterOptions,
  clusterStatement,
  clusterStatements,
  LOCAL_SUFFIX,
  TABLE_LAYOUT,
} from './cluster.js';
import { loadMigrations, MIGRATIONS_TABLE, migrate, migrationStatements } from './migrate.js';

const CLUSTER: ClusterOptions = { cluster: 'flowsentry', database: 'flowsentry', sharding: 'exporter' };
const migrations = loadMigrations();
const generated = migrations.flatMap((m) => migrationStatements(m, CLUSTER));
const schemaMigrations = clusterStatement(MIGRATIONS_TABLE, CLUSTER);

/**
 * What the embedded engine can run of the cluster DDL: the statements without ON CLUSTER (chDB has
 * no cluster), with each Replicated engine turned back into its plain form (no Keeper), and without
 * the Distributed tables (they need a cluster in remote_servers) and the ALTERs of those. What remains are exactly the
 * tables that hold rows on each server, and the views that fill them.
 */
function runnableLocally(statement: string): string | null {
  if (/ENGINE = Distributed\(/.test(statement)) return null;
  const altered = /^ALTER TABLE (\w+) /.exec(statement)?.[1];
  if (altered && TABLE_LAYOUT[altered]?.kind === 'sharded') return null;
  return statement
    .replace(/ ON CLUSTER \w+/g, '')
    .replace(/ENGINE = Replicated(\w*MergeTree)\('[^']*', '[^']*'(?:, )?/, 'ENGINE = $1(')
    .replace(/ENGINE = (\w*MergeTree)\(\)/, 'ENGINE = $1');
}

const scratch = tempDir('flowsentry-cluster-');
let store: Store;
beforeAll(async () => {
  store = await openStore({ url: '', user: 'default', password: '', database: 'single' }, scratch.path);
  await migrate(store, silentLogger());
  // The cluster's local tables, in a database of their own on the same engine.
  await store.client.command({ query: 'CREATE DATABASE IF NOT EXISTS cluster_local' });
  await store.client.command({ query: 'USE cluster_local' });
  for (const statement of [...schemaMigrations, ...generated]) {
    const local = runnableLocally(statement);
    if (local) {
      await store.client.command({
        query: local,
        clickhouse_settings: { allow_suspicious_low_cardinality_types: 1 },
      });
    }
  }
  await store.client.command({ query: 'USE single' });
}, 120_000);
afterAll(async () => {
  await store?.close();
  scratch.remove();
});

type Column = {
  table: string;
  name: string;
  type: string;
  position: number;
  default_expression: string;
  compression_codec: string;
};

async function columns(database: string): Promise<Map<string, Column[]>> {
  const rows = await queryRows<Column>(
    store,
    `SELECT table, name, type, position, default_expression, compression_codec FROM system.columns
     WHERE database = {db:String} ORDER BY table, position`,
    { db: database },
  );
  const byTable = new Map<string, Column[]>();
  for (const r of rows) byTable.set(r.table, [...(byTable.get(r.table) ?? []), r]);
  return byTable;
}

/** The single-node name of a cluster table: flows_local holds what flows holds on one server. */
const singleName = (table: string) =>
  table.endsWith(LOCAL_SUFFIX) ? table.slice(0, -LOCAL_SUFFIX.length) : table;

describe('cluster DDL generated from the migrations', () => {
  test('the local tables have the single-node columns, types, defaults and codecs, table by table', async () => {
    const single = await columns('single');
    const cluster = await columns('cluster_local');
    expect(single.size).toBeGreaterThanOrEqual(12);
    // Every single-node table (and view) has its cluster counterpart, and nothing else exists.
    expect([...cluster.keys()].map(singleName).sort()).toEqual([...single.keys()].sort());
    for (const [table, cols] of cluster) {
      const expected = single.get(singleName(table))!;
      const strip = (c: Column[]) => c.map(({ table: _t, ...rest }) => rest);
      expect(strip(cols), table).toEqual(strip(expected));
    }
  });

  test('same engines (Replicated aside), keys, partitions, TTLs and skip indexes', async () => {
    const tables = (db: string) =>
      queryRows<{
        name: string;
        engine: string;
        sorting_key: string;
        partition_key: string;
        primary_key: string;
        ttl: string;
      }>(
        store,
        `SELECT name, engine, sorting_key, partition_key, primary_key,
           extract(engine_full, 'TTL [^S]+') AS ttl
         FROM system.tables WHERE database = {db:String} ORDER BY name`,
        { db },
      );
    const single = await tables('single');
    const cluster = await tables('cluster_local');
    expect(
      cluster.map((t) => ({ ...t, name: singleName(t.name) })).sort((a, b) => a.name.localeCompare(b.name)),
    ).toEqual([...single].sort((a, b) => a.name.localeCompare(b.name)));
    const indexes = (db: string) =>
      queryRows<{ table: string; name: string; type_full: string; expr: string; granularity: number }>(
        store,
        `SELECT table, name, type_full, expr, granularity FROM system.data_skipping_indices
         WHERE database = {db:String} ORDER BY table, name`,
        { db },
      );
    const singleIndexes = await indexes('single');
    expect(singleIndexes.length).toBeGreaterThanOrEqual(6);
    const byKey = (a: { table: string; name: string }, b: { table: string; name: string }) =>
      `${a.table}.${a.name}`.localeCompare(`${b.table}.${b.name}`);
    expect(
      (await indexes('cluster_local')).map((i) => ({ ...i, table: singleName(i.table) })).sort(byKey),
    ).toEqual([...singleIndexes].sort(byKey));
  });

  test("each shard's views roll up the flows stored on it", async () => {
    const row = {
      time_received: '2026-11-23 10:00:30',
      flow_start: '2026-11-23 10:00:00.000',
      flow_end: '2026-11-23 10:00:20.000',
      exporter_address: '::ffff:192.0.2.1',
      src_addr: '::ffff:10.0.0.1',
      dst_addr: '::ffff:10.0.0.2',
      proto: 6,
      bytes: 1500,
      packets: 3,
    };
    await store.client.insert({
      table: 'cluster_local.flows_local',
      values: [row, { ...row, bytes: 500, packets: 1 }],
      format: 'JSONEachRow',
    });
    for (const table of ['flows_1m_local', 'flows_1h_local']) {
      const rows = await queryRows<{ flows: number; bytes: number; packets: number }>(
        store,
        `SELECT sum(flows) AS flows, sum(bytes) AS bytes, sum(packets) AS packets FROM cluster_local.${table}`,
      );
      expect(rows, table).toEqual([{ flows: 2, bytes: 2000, packets: 4 }]);
    }
  });

  test('every statement runs ON CLUSTER; sharded tables are Replicated locally with a Distributed table over them', () => {
    for (const s of [...schemaMigrations, ...generated])
      expect(s).toMatch(/^(CREATE|ALTER) \S+( \S+)*? ON CLUSTER flowsentry\b/);
    const creates = new Map(
      generated
        .map((s) => /^CREATE TABLE IF NOT EXISTS (\w+) /.exec(s))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => [m[1]!, m.input] as const),
    );
    for (const [table, layout] of Object.entries(TABLE_LAYOUT)) {
      if (table === 'schema_migrations') continue;
      if (layout.kind === 'sharded') {
        expect(creates.get(`${table}_local`), table).toMatch(
          /ENGINE = Replicated\w*MergeTree\('\/clickhouse\/tables\/\{shard\}\/\{database\}\/\{table\}', '\{replica\}'/,
        );
        expect(creates.get(table), table).toBe(
          `CREATE TABLE IF NOT EXISTS ${table} ON CLUSTER flowsentry AS ${table}_local\n` +
            `ENGINE = Distributed(flowsentry, flowsentry, ${table}_local, ${layout.key(CLUSTER)})`,
        );
      } else {
        expect(creates.has(`${table}_local`), table).toBe(false);
        expect(creates.get(table), table).toMatch(
          /ENGINE = Replicated\w*MergeTree\('\/clickhouse\/tables\/all\/\{database\}\/\{table\}', '\{replica\}'/,
        );
      }
    }
    // Engine arguments are kept after the Keeper path and replica.
    expect(creates.get('findings_local')).toContain("'{replica}', version)");
    expect(creates.get('flows_1m_local')).toContain(
      "'{replica}', (flows, bytes, packets, reverse_bytes, reverse_packets))",
    );
    expect(schemaMigrations[0]).toContain('ENGINE = ReplicatedReplacingMergeTree(');
    // Views read and write the local tables.
    expect(
      generated
        .filter((s) => s.startsWith('CREATE MATERIALIZED VIEW'))
        .map((s) => /TO (\w+) AS[\s\S]*FROM (\w+)/.exec(s)!.slice(1)),
    ).toEqual([
      ['flows_1m_local', 'flows_local'],
      ['flows_1h_local', 'flows_local'],
    ]);
  });

  test('ALTERs: indexes on the local table only, columns on the Distributed table too', () => {
    expect(
      clusterStatement(
        'ALTER TABLE flows ADD INDEX IF NOT EXISTS i flow_start TYPE minmax GRANULARITY 1',
        CLUSTER,
      ),
    ).toEqual([
      'ALTER TABLE flows_local ON CLUSTER flowsentry ADD INDEX IF NOT EXISTS i flow_start TYPE minmax GRANULARITY 1',
    ]);
    expect(
      clusterStatement(
        "ALTER TABLE finding_events ADD COLUMN IF NOT EXISTS rule_id String DEFAULT ''",
        CLUSTER,
      ),
    ).toEqual([
      "ALTER TABLE finding_events_local ON CLUSTER flowsentry ADD COLUMN IF NOT EXISTS rule_id String DEFAULT ''",
      "ALTER TABLE finding_events ON CLUSTER flowsentry ADD COLUMN IF NOT EXISTS rule_id String DEFAULT ''",
    ]);
    expect(clusterStatement('ALTER TABLE siem_outbox ADD COLUMN IF NOT EXISTS x String', CLUSTER)).toEqual([
      'ALTER TABLE siem_outbox ON CLUSTER flowsentry ADD COLUMN IF NOT EXISTS x String',
    ]);
  });

  test('storage.cluster.sharding chooses the flows key: by exporter or by host pair', () => {
    const key = (sharding: ClusterOptions['sharding']) =>
      /Distributed\(.*\)$/.exec(
        migrationStatements(migrations[0]!, { ...CLUSTER, sharding }).find((s) => s.includes('Distributed'))!,
      )![0];
    expect(key('exporter')).toBe(
      'Distributed(flowsentry, flowsentry, flows_local, cityHash64(exporter_address))',
    );
    expect(key('host-pair')).toBe(
      'Distributed(flowsentry, flowsentry, flows_local, cityHash64(src_addr, dst_addr))',
    );
  });

  test('a statement it cannot convert, or a table without a layout, fails generation and names it', () => {
    expect(() =>
      clusterStatement(
        'CREATE TABLE IF NOT EXISTS new_table (a UInt8) ENGINE = MergeTree ORDER BY a',
        CLUSTER,
      ),
    ).toThrow(/table new_table has no layout/);
    expect(() => clusterStatement('DROP TABLE flows', CLUSTER)).toThrow(/cannot convert this statement/);
    expect(() =>
      clusterStatements(['CREATE TABLE IF NOT EXISTS flows (a UInt8) ENGINE = Memory'], CLUSTER),
    ).toThrow(/no MergeTree engine/);
  });

  test('storage.cluster.name without a ClickHouse server is refused, naming the field', () => {
    const result = configSchema.safeParse({ storage: { cluster: { name: 'flowsentry' } } });
    expect(result.success).toBe(false);
    expect(result.error!.issues.map((i) => i.path.join('.'))).toEqual(['storage.cluster.name']);
    const bad = configSchema.safeParse({ storage: { cluster: { name: 'x', sharding: 'random' } } });
    expect(bad.error!.issues.map((i) => i.path.join('.'))).toContain('storage.cluster.sharding');
    const ok = configSchema.parse({
      storage: { clickhouse: { url: 'http://ch:8123' }, cluster: { name: 'flowsentry' } },
    });
    expect(ok.storage.cluster).toEqual({ name: 'flowsentry', sharding: 'exporter' });
  });
});
