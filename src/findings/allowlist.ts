import { randomUUID } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { AddressSet } from '../detect/networks.js';
import { insertRows, queryRows, type Store } from '../storage/clickhouse.js';
import { chTime } from './store.js';

/**
 * Analyst allowlist rules, kept in ClickHouse (allowlist_rules, migration 0005). A rule drops a
 * detector's observations whose source is in `src_cidr` and whose destination is in `dst_cidr` (a
 * null side matches anything; at least one side is set), for one detector or every detector (null),
 * until `expires_at` (null: until removed). The detection engine reads the rules in force at every
 * run (`rulesFor`), so a rule applies to scheduled windows and to backfills alike, from the next
 * window on.
 */
export const allowlistRuleSchema = z
  .object({
    id: z.string(),
    detector: z.string().nullable().describe('null: every detector'),
    src_cidr: z.string().nullable().describe('null: any source'),
    dst_cidr: z.string().nullable().describe('null: any destination'),
    comment: z.string(),
    created_by: z.string(),
    created_at: z.string(),
    expires_at: z.string().nullable().describe('null: until removed'),
    finding_id: z.string().nullable().describe('the finding whose suppression created the rule'),
    active: z.boolean().describe('false once expired'),
  })
  .meta({ id: 'AllowlistRule' });

export type AllowlistRule = z.infer<typeof allowlistRuleSchema>;

export interface NewRule {
  readonly detector: string | null;
  readonly srcCidr: string | null;
  readonly dstCidr: string | null;
  readonly comment: string;
  readonly actor: string;
  readonly expiresAt: number | null;
  readonly findingId: string | null;
}

/** A rule as the engine applies it. */
export interface SuppressionRule {
  readonly src: AddressSet | null;
  readonly dst: AddressSet | null;
}

interface RuleRow {
  id: string;
  version: number;
  detector: string;
  src_cidr: string;
  dst_cidr: string;
  comment: string;
  created_by: string;
  created_at: string;
  expires_at: string | null;
  finding_id: string;
  removed: number;
  removed_by: string;
  removed_at: string | null;
}

const COLUMNS =
  'id, version, detector, src_cidr, dst_cidr, comment, created_by, created_at, expires_at, finding_id, removed, removed_by, removed_at';

const toMs = (s: string): number => Date.parse(/[zZ]$/.test(s) ? s : `${s.replace(' ', 'T')}Z`);

/** The network of a CIDR in canonical text: 10.1.2.3/8 becomes 10.0.0.0/8; a bare address its /32 or /128. */
export function canonicalCidr(text: string): string {
  const [addr, bits] = text.includes('/')
    ? ipaddr.parseCIDR(text)
    : ((a) => [a, a.kind() === 'ipv4' ? 32 : 128] as const)(ipaddr.process(text));
  const network =
    addr.kind() === 'ipv4'
      ? ipaddr.IPv4.networkAddressFromCIDR(`${addr.toString()}/${bits}`)
      : ipaddr.IPv6.networkAddressFromCIDR(`${addr.toString()}/${bits}`);
  return `${network.toString()}/${bits}`;
}

export class AllowlistStore {
  private lastVersion = 0;

  constructor(private readonly store: Store) {}

  private nextVersion(): number {
    this.lastVersion = Math.max(Date.now(), this.lastVersion + 1);
    return this.lastVersion;
  }

  private toRule(r: RuleRow, now: number): AllowlistRule {
    const expires = r.expires_at ? toMs(r.expires_at) : null;
    return {
      id: r.id,
      detector: r.detector || null,
      src_cidr: r.src_cidr || null,
      dst_cidr: r.dst_cidr || null,
      comment: r.comment,
      created_by: r.created_by,
      created_at: new Date(toMs(r.created_at)).toISOString(),
      expires_at: expires === null ? null : new Date(expires).toISOString(),
      finding_id: r.finding_id || null,
      active: expires === null || expires > now,
    };
  }

  async create(rule: NewRule): Promise<AllowlistRule> {
    if (!rule.srcCidr && !rule.dstCidr) throw new Error('an allowlist rule needs a source or a destination');
    const now = Date.now();
    const row: RuleRow = {
      id: randomUUID(),
      version: this.nextVersion(),
      detector: rule.detector ?? '',
      src_cidr: rule.srcCidr ? canonicalCidr(rule.srcCidr) : '',
      dst_cidr: rule.dstCidr ? canonicalCidr(rule.dstCidr) : '',
      comment: rule.comment,
      created_by: rule.actor,
      created_at: chTime(now),
      expires_at: rule.expiresAt === null ? null : chTime(rule.expiresAt),
      finding_id: rule.findingId ?? '',
      removed: 0,
      removed_by: '',
      removed_at: null,
    };
    await insertRows(this.store, 'allowlist_rules', [row]);
    return this.toRule(row, now);
  }

  /** Rules not removed (expired ones too unless `activeOnly`), newest first. */
  async list(options: { activeOnly?: boolean; findingId?: string } = {}): Promise<AllowlistRule[]> {
    const rows = await queryRows<RuleRow>(
      this.store,
      `SELECT ${COLUMNS} FROM allowlist_rules FINAL
       WHERE removed = 0 ${options.findingId ? 'AND finding_id = {finding:String}' : ''}
       ORDER BY created_at DESC, id
       LIMIT 10000`,
      options.findingId ? { finding: options.findingId } : {},
      { readonly: true, timeoutSeconds: 30 },
    );
    const now = Date.now();
    const rules = rows.map((r) => this.toRule(r, now));
    return options.activeOnly ? rules.filter((r) => r.active) : rules;
  }

  async get(id: string): Promise<AllowlistRule | null> {
    const [row] = await queryRows<RuleRow>(
      this.store,
      `SELECT ${COLUMNS} FROM allowlist_rules FINAL WHERE id = {id:String} AND removed = 0`,
      { id },
      { readonly: true, timeoutSeconds: 30 },
    );
    return row ? this.toRule(row, Date.now()) : null;
  }

  /** Removes a rule (a new version marked removed); returns it, or null when there is no such rule. */
  async remove(id: string, actor: string): Promise<AllowlistRule | null> {
    const [row] = await queryRows<RuleRow>(
      this.store,
      `SELECT ${COLUMNS} FROM allowlist_rules FINAL WHERE id = {id:String} AND removed = 0`,
      { id },
      { readonly: true, timeoutSeconds: 30 },
    );
    if (!row) return null;
    const now = Date.now();
    await insertRows(this.store, 'allowlist_rules', [
      { ...row, version: this.nextVersion(), removed: 1, removed_by: actor, removed_at: chTime(now) },
    ]);
    return this.toRule(row, now);
  }

  /** The rules in force now for a detector (its own and those for every detector). */
  async rulesFor(detector: string): Promise<SuppressionRule[]> {
    const rows = await queryRows<{ src_cidr: string; dst_cidr: string }>(
      this.store,
      `SELECT src_cidr, dst_cidr FROM allowlist_rules FINAL
       WHERE removed = 0 AND (detector = '' OR detector = {detector:String})
         AND (expires_at IS NULL OR expires_at > now64(3))`,
      { detector },
      { readonly: true, timeoutSeconds: 30 },
    );
    return rows.map((r) => ({
      src: r.src_cidr ? new AddressSet([r.src_cidr]) : null,
      dst: r.dst_cidr ? new AddressSet([r.dst_cidr]) : null,
    }));
  }
}
