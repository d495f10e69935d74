import type { Finding } from '../findings/model.js';
import { chTime, FINDING_COLUMNS, rowToFinding } from '../findings/store.js';
import { insertRows, queryRows, type Store } from '../storage/clickhouse.js';

type FindingRow = Parameters<typeof rowToFinding>[0];

/** A destination's place in the findings table (migrations/0004_create_siem_outbox.sql). */
export interface OutboxState {
  /** Every version at or below this was sent, skipped or replaced by a sent one. */
  readonly position: number;
  /** Sent (id, version) pairs near the position, not to be sent again when read again. */
  readonly sent: ReadonlyArray<readonly [string, number]>;
  readonly savedAt: number;
}

/**
 * The findings table read as an outbox. Every row is one version of a finding (each update writes a
 * new row with a higher `version`), so reading rows by version, without FINAL, sees every update;
 * versions a background merge has already replaced are simply not seen, and their successor is.
 */
export class FindingOutbox {
  private revision = 0;

  constructor(private readonly store: Store) {}

  /** Versions above `after`, oldest first; ties broken by id. */
  async after(after: number, limit: number): Promise<Finding[]> {
    const rows = await queryRows<FindingRow>(
      this.store,
      `SELECT ${FINDING_COLUMNS} FROM findings WHERE version > {after:UInt64}
       ORDER BY version, id LIMIT {limit:UInt32}`,
      { after, limit },
    );
    return rows.map(rowToFinding);
  }

  /** (id, version) of the rows with versions in (from, to]: cheap, to find rows that landed late. */
  async versions(from: number, to: number): Promise<Array<{ id: string; version: number }>> {
    if (to <= from) return [];
    const rows = await queryRows<{ id: string; version: number }>(
      this.store,
      'SELECT id, version FROM findings WHERE version > {from:UInt64} AND version <= {to:UInt64}',
      { from, to },
    );
    return rows.map((r) => ({ id: r.id, version: Number(r.version) }));
  }

  /** The rows of these (id, version) pairs (those still stored). */
  async rows(pairs: ReadonlyArray<{ id: string; version: number }>): Promise<Finding[]> {
    if (pairs.length === 0) return [];
    const wanted = new Set(pairs.map((p) => `${p.id}\n${p.version}`));
    const versions = pairs.map((p) => p.version);
    const rows = await queryRows<FindingRow>(
      this.store,
      `SELECT ${FINDING_COLUMNS} FROM findings
       WHERE id IN {ids:Array(String)} AND version >= {lo:UInt64} AND version <= {hi:UInt64}
       ORDER BY version, id`,
      { ids: [...new Set(pairs.map((p) => p.id))], lo: Math.min(...versions), hi: Math.max(...versions) },
    );
    return rows.map(rowToFinding).filter((f) => wanted.has(`${f.id}\n${f.version}`));
  }

  /** Rows above `after` that may go out (forward = 1), and the oldest of their update times. */
  async backlog(after: number): Promise<{ rows: number; oldestUpdate: number }> {
    const [row] = await queryRows<{ rows: number; oldest: string | null }>(
      this.store,
      `SELECT count() AS rows, if(count() = 0, NULL, min(updated_at)) AS oldest
       FROM findings WHERE version > {after:UInt64} AND forward = 1`,
      { after },
    );
    const oldest = row?.oldest ? Date.parse(row.oldest.endsWith('Z') ? row.oldest : `${row.oldest}Z`) : NaN;
    return {
      rows: Number(row?.rows ?? 0),
      oldestUpdate: Number.isFinite(oldest) ? oldest : Number.POSITIVE_INFINITY,
    };
  }

  async load(destination: string): Promise<OutboxState | null> {
    const [row] = await queryRows<{
      position: number;
      sent_ids: string[];
      sent_versions: number[];
      saved_at: string;
      revision: number;
    }>(
      this.store,
      `SELECT position, sent_ids, sent_versions, saved_at, revision FROM siem_outbox FINAL
       WHERE destination = {destination:String}`,
      { destination },
    );
    if (!row) return null;
    this.revision = Math.max(this.revision, Number(row.revision));
    return {
      position: Number(row.position),
      sent: row.sent_ids.map((id, i) => [id, Number(row.sent_versions[i] ?? 0)] as const),
      savedAt: Date.parse(row.saved_at.endsWith('Z') ? row.saved_at : `${row.saved_at}Z`),
    };
  }

  async save(destination: string, state: Omit<OutboxState, 'savedAt'>): Promise<void> {
    // A revision above every one written before, even if the clock stepped back.
    this.revision = Math.max(Date.now(), this.revision + 1);
    await insertRows(this.store, 'siem_outbox', [
      {
        destination,
        position: Math.max(0, Math.floor(state.position)),
        sent_ids: state.sent.map(([id]) => id),
        sent_versions: state.sent.map(([, version]) => version),
        saved_at: chTime(Date.now()),
        revision: this.revision,
      },
    ]);
  }
}
