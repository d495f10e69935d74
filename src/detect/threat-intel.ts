import { readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import ipaddr from 'ipaddr.js';
import { errorMessage, FlowsentryError } from '../common/errors.js';
import { parseAddress } from '../common/ip.js';
import type { Logger } from '../common/logger.js';

/** What an indicator list is about: decides the technique of a match (Tor: T1090.003). */
export type IndicatorCategory = 'malicious' | 'tor' | 'mining';

export interface IndicatorMatch {
  /** The entry that matched, as written in the file (an address or a CIDR). */
  readonly indicator: string;
  readonly list: string;
  readonly category: IndicatorCategory;
  /** The text after the address on its line, if any (a `#` comment or a CSV field). */
  readonly note: string;
}

interface ListState {
  readonly path: string;
  mtimeMs: number;
  size: number;
  entries: number;
  invalid: number;
}

/**
 * Indicator lists: files of IP addresses and CIDRs, one a line, `#` starting a comment. A file's
 * category comes from a `# category: tor|mining|malicious` line, else from its name (a word "tor",
 * or "mining"/"miner"/"pool"), else malicious. Files are re-read when their size or modification time
 * changes (checked before each detector run), so feeds can be replaced in place.
 *
 * Lookups take one map probe per distinct prefix length in the lists (exact addresses first), so
 * overlapping CIDRs and tens of thousands of entries cost the same.
 */
export class ThreatIntel {
  private readonly lists: ListState[];
  /** prefix length (0..128, IPv4 as mapped) → masked address hex → match. */
  private byPrefix = new Map<number, Map<string, IndicatorMatch>>();
  private prefixes: number[] = [];
  private loaded = false;

  constructor(
    files: readonly string[],
    private readonly log: Logger,
  ) {
    this.lists = files.map((path) => ({ path, mtimeMs: -1, size: -1, entries: 0, invalid: 0 }));
    for (const list of this.lists) {
      try {
        statSync(list.path);
      } catch (error) {
        throw new FlowsentryError(
          'CONFIG_INVALID',
          `FLOWSENTRY_THREAT_INTEL (detection.threatIntel): cannot read ${list.path}: ${errorMessage(error)}`,
        );
      }
    }
    this.refresh();
  }

  get size(): number {
    let n = 0;
    for (const m of this.byPrefix.values()) n += m.size;
    return n;
  }

  /** Per list: path, entries, invalid lines. */
  get status(): ReadonlyArray<{ path: string; entries: number; invalid: number }> {
    return this.lists.map(({ path, entries, invalid }) => ({ path, entries, invalid }));
  }

  /** Re-reads lists that changed; returns true when anything was reloaded. */
  refresh(): boolean {
    let changed = false;
    for (const list of this.lists) {
      try {
        const st = statSync(list.path);
        if (st.mtimeMs !== list.mtimeMs || st.size !== list.size) {
          list.mtimeMs = st.mtimeMs;
          list.size = st.size;
          changed = true;
        }
      } catch (error) {
        this.log.warn(
          { list: list.path, err: errorMessage(error) },
          'indicator list unreadable; keeping the last one',
        );
      }
    }
    if (!changed && this.loaded) return false;
    this.loaded = true;
    const byPrefix = new Map<number, Map<string, IndicatorMatch>>();
    for (const list of this.lists) {
      let text: string;
      try {
        text = readFileSync(list.path, 'utf8');
      } catch {
        continue;
      }
      const { entries, invalid } = parseList(text, list.path, byPrefix);
      list.entries = entries;
      list.invalid = invalid;
      if (invalid > 0)
        this.log.warn({ list: list.path, invalid }, 'indicator lines that are not addresses were skipped');
    }
    this.byPrefix = byPrefix;
    this.prefixes = [...byPrefix.keys()].sort((a, b) => b - a);
    if (this.lists.length > 0)
      this.log.info({ indicators: this.size, lists: this.lists.length }, 'indicator lists loaded');
    return true;
  }

  /** The most specific indicator that covers `address`, or null. */
  lookup(address: string): IndicatorMatch | null {
    const bytes = parseAddress(address);
    if (!bytes) return null;
    for (const prefix of this.prefixes) {
      const hit = this.byPrefix.get(prefix)!.get(maskedHex(bytes, prefix));
      if (hit) return hit;
    }
    return null;
  }
}

function parseList(
  text: string,
  path: string,
  byPrefix: Map<number, Map<string, IndicatorMatch>>,
): { entries: number; invalid: number } {
  const name = basename(path);
  let category: IndicatorCategory = /(^|[^a-z])tor([^a-z]|$)/i.test(name)
    ? 'tor'
    : /(mining|miner|pool)/i.test(name)
      ? 'mining'
      : 'malicious';
  const directive = /^#\s*category\s*[:=]\s*(tor|mining|malicious)\s*$/im.exec(text);
  if (directive) category = directive[1]!.toLowerCase() as IndicatorCategory;
  let entries = 0;
  let invalid = 0;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [first = ''] = line.split(/[\s,;#]+/);
    const note = line
      .slice(first.length)
      .replace(/^[\s,;#]+/, '')
      .slice(0, 200);
    const parsed = parseEntry(first);
    if (!parsed) {
      invalid++;
      continue;
    }
    let table = byPrefix.get(parsed.prefix);
    if (!table) {
      table = new Map();
      byPrefix.set(parsed.prefix, table);
    }
    const key = maskedHex(parsed.bytes, parsed.prefix);
    if (!table.has(key)) {
      table.set(key, { indicator: first, list: name, category, note });
      entries++;
    }
  }
  return { entries, invalid };
}

function parseEntry(text: string): { bytes: Uint8Array; prefix: number } | null {
  try {
    if (text.includes('/')) {
      const [addr, bits] = ipaddr.parseCIDR(text);
      const v4 = addr.kind() === 'ipv4';
      const v6 = v4 ? (addr as ipaddr.IPv4).toIPv4MappedAddress() : (addr as ipaddr.IPv6);
      return { bytes: Uint8Array.from(v6.toByteArray()), prefix: v4 ? bits + 96 : bits };
    }
    const bytes = parseAddress(text);
    return bytes ? { bytes, prefix: 128 } : null;
  } catch {
    return null;
  }
}

function maskedHex(bytes: Uint8Array, prefix: number): string {
  let out = '';
  for (let i = 0; i < 16; i++) {
    const bitsHere = Math.max(0, Math.min(8, prefix - i * 8));
    const mask = bitsHere === 0 ? 0 : (0xff << (8 - bitsHere)) & 0xff;
    out += (bytes[i]! & mask).toString(16).padStart(2, '0');
  }
  return `${prefix}/${out}`;
}
