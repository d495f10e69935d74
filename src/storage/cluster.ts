import { FlowsentryError } from '../common/errors.js';

/**
 * Cluster DDL, generated from the single-node migrations (migrations/*.sql) so that there is one
 * schema to maintain. For a ClickHouse cluster (`storage.cluster.name`, a cluster of the servers'
 * remote_servers) each statement runs ON CLUSTER and:
 *
 * - a sharded table X (flows, its rollups, findings and what hangs off them, the run log) becomes
 *   X_local, with the Replicated variant of its engine (Keeper path /clickhouse/tables/{shard}/
 *   {database}/{table}, replica {replica}: the servers' macros), plus X itself as a Distributed table
 *   over X_local with a sharding key. Every query and insert of flowsentry keeps using X.
 * - a materialized view reads and writes the local tables (flows_1m_mv: flows_local → flows_1m_local),
 *   so each shard rolls up the flows it stores.
 * - a small state table (the SIEM outbox, allowlist rules, detector settings, the migration log) is
 *   replicated to every server (one Keeper path for all shards, no Distributed table): every node
 *   reads it whole, and an insert on any node reaches all of them.
 *
 * Sharding keys: findings by id (all versions of a finding on one shard, so FINAL stays correct),
 * contributions and events by finding id, runs by detector, flows as configured: by exporter
 * (`exporter`, the default: an exporter's flows stay together, as rollups and per-exporter queries
 * like) or by host pair (`host-pair`: spreads a large exporter over the shards and keeps a
 * conversation's flows together, what most detectors group by).
 *
 * The statements are parsed only as far as migrations/ writes them: `CREATE TABLE IF NOT EXISTS name`
 * with an `ENGINE = <x>MergeTree[(args)]` clause, `CREATE MATERIALIZED VIEW IF NOT EXISTS name TO
 * target AS SELECT … FROM table`, and `ALTER TABLE name …`. Anything else fails generation, naming
 * the statement, so a new kind of migration cannot slip through unconverted.
 */

export const SHARDING = ['exporter', 'host-pair'] as const;
export type Sharding = (typeof SHARDING)[number];

export interface ClusterOptions {
  /** The cluster's name in the servers' remote_servers. */
  readonly cluster: string;
  /** The database flowsentry uses (the Distributed tables name it). */
  readonly database: string;
  readonly sharding: Sharding;
}

/** How each table of the schema is laid out on a cluster. */
type Layout =
  | { readonly kind: 'sharded'; readonly key: (o: ClusterOptions) => string }
  | { readonly kind: 'everywhere' };

const FLOW_KEY = (o: ClusterOptions) =>
  o.sharding === 'exporter' ? 'cityHash64(exporter_address)' : 'cityHash64(src_addr, dst_addr)';

export const TABLE_LAYOUT: Readonly<Record<string, Layout>> = {
  flows: { kind: 'sharded', key: FLOW_KEY },
  // Filled by materialized views on each shard; the key only serves inserts made into them directly.
  flows_1m: { kind: 'sharded', key: () => 'cityHash64(exporter_address)' },
  flows_1h: { kind: 'sharded', key: () => 'cityHash64(exporter_address)' },
  findings: { kind: 'sharded', key: () => 'cityHash64(id)' },
  finding_contributions: { kind: 'sharded', key: () => 'cityHash64(finding_id)' },
  finding_events: { kind: 'sharded', key: () => 'cityHash64(finding_id)' },
  detector_runs: { kind: 'sharded', key: () => 'cityHash64(detector)' },
  siem_outbox: { kind: 'everywhere' },
  allowlist_rules: { kind: 'everywhere' },
  detector_settings: { kind: 'everywhere' },
  schema_migrations: { kind: 'everywhere' },
};

export const LOCAL_SUFFIX = '_local';

/** Keeper paths: one replicated table per shard, or one for the whole cluster. */
const SHARD_PATH = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'";
const CLUSTER_PATH = "'/clickhouse/tables/all/{database}/{table}', '{replica}'";

function layoutOf(table: string, statement: string): Layout {
  const layout = TABLE_LAYOUT[table];
  if (!layout) {
    throw new FlowsentryError(
      'MIGRATION_FAILED',
      `cluster DDL: table ${table} has no layout in src/storage/cluster.ts (TABLE_LAYOUT): ${statement.slice(0, 80)}`,
    );
  }
  return layout;
}

/** The text between the parenthesis at `open` and its match. */
function balanced(text: string, open: number): { inner: string; end: number } {
  let depth = 0;
  let quoted = false;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === "'") quoted = false;
      continue;
    }
    if (c === "'") quoted = true;
    else if (c === '(') depth++;
    else if (c === ')' && --depth === 0) return { inner: text.slice(open + 1, i), end: i + 1 };
  }
  throw new FlowsentryError(
    'MIGRATION_FAILED',
    `cluster DDL: unbalanced parentheses in ${text.slice(0, 80)}`,
  );
}

/** `ENGINE = XMergeTree[(args)]` → `ENGINE = ReplicatedXMergeTree(path, replica[, args])`. */
function replicatedEngine(statement: string, path: string): string {
  const m = /\bENGINE\s*=\s*(\w*MergeTree)\b/.exec(statement);
  if (!m) {
    throw new FlowsentryError(
      'MIGRATION_FAILED',
      `cluster DDL: no MergeTree engine in ${statement.slice(0, 80)}`,
    );
  }
  const after = m.index + m[0].length;
  let args = '';
  let end = after;
  if (statement[after] === '(') {
    const b = balanced(statement, after);
    args = b.inner.trim();
    end = b.end;
  }
  const engine = m[1]!.startsWith('Replicated') ? m[1]! : `Replicated${m[1]}`;
  return `${statement.slice(0, m.index)}ENGINE = ${engine}(${path}${args ? `, ${args}` : ''})${statement.slice(end)}`;
}

const onCluster = (o: ClusterOptions) => `ON CLUSTER ${o.cluster}`;

/** The cluster form of one single-node statement (one or more statements). */
export function clusterStatement(statement: string, o: ClusterOptions): string[] {
  const text = statement.trim();
  let m = /^CREATE TABLE IF NOT EXISTS (\w+)\s*/i.exec(text);
  if (m) {
    const table = m[1]!;
    const rest = text.slice(m[0].length);
    const layout = layoutOf(table, text);
    if (layout.kind === 'everywhere') {
      return [replicatedEngine(`CREATE TABLE IF NOT EXISTS ${table} ${onCluster(o)}\n${rest}`, CLUSTER_PATH)];
    }
    const local = `${table}${LOCAL_SUFFIX}`;
    return [
      replicatedEngine(`CREATE TABLE IF NOT EXISTS ${local} ${onCluster(o)}\n${rest}`, SHARD_PATH),
      `CREATE TABLE IF NOT EXISTS ${table} ${onCluster(o)} AS ${local}\n` +
        `ENGINE = Distributed(${o.cluster}, ${o.database}, ${local}, ${layout.key(o)})`,
    ];
  }
  m = /^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS\b/i.exec(text);
  if (m) {
    const [, view, target] = m;
    const select = text.slice(m[0].length);
    const sources = [...select.matchAll(/\bFROM\s+(\w+)/gi)];
    if (sources.length !== 1) {
      throw new FlowsentryError(
        'MIGRATION_FAILED',
        `cluster DDL: view ${view} must read exactly one table (found ${sources.length})`,
      );
    }
    const local = (t: string) => (layoutOf(t, text).kind === 'sharded' ? `${t}${LOCAL_SUFFIX}` : t);
    return [
      `CREATE MATERIALIZED VIEW IF NOT EXISTS ${view} ${onCluster(o)} TO ${local(target!)} AS` +
        select.replace(/\bFROM\s+(\w+)/i, (_all, t: string) => `FROM ${local(t)}`),
    ];
  }
  m = /^ALTER TABLE (\w+)\s+/i.exec(text);
  if (m) {
    const table = m[1]!;
    const change = text.slice(m[0].length);
    const layout = layoutOf(table, text);
    if (layout.kind === 'everywhere') return [`ALTER TABLE ${table} ${onCluster(o)} ${change}`];
    const statements = [`ALTER TABLE ${table}${LOCAL_SUFFIX} ${onCluster(o)} ${change}`];
    // A column must exist on the Distributed table too (its structure is what queries see); indexes,
    // TTLs and settings belong to the local tables only.
    if (/^ADD COLUMN\b/i.test(change)) statements.push(`ALTER TABLE ${table} ${onCluster(o)} ${change}`);
    return statements;
  }
  throw new FlowsentryError(
    'MIGRATION_FAILED',
    `cluster DDL: cannot convert this statement (CREATE TABLE IF NOT EXISTS, CREATE MATERIALIZED VIEW IF NOT EXISTS … TO, ALTER TABLE): ${text.slice(0, 80)}`,
  );
}

/** The cluster form of a migration's statements. */
export function clusterStatements(statements: readonly string[], o: ClusterOptions): string[] {
  return statements.flatMap((s) => clusterStatement(s, o));
}

/** The table that holds a table's rows and settings (TTL, engine): X_local when X is sharded. */
export function storageTable(table: string, cluster: ClusterOptions | null): string {
  return cluster && TABLE_LAYOUT[table]?.kind === 'sharded' ? `${table}${LOCAL_SUFFIX}` : table;
}
