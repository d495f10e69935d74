import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { REPO_ROOT } from '../../test/support/service.js';
import { CLICKHOUSE_ERRORS, CODE_STATUS, STATUS_CODES } from './errors.js';

/** The README's Errors section against the error catalogue: a code added to one and not the other fails. */
const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
const section = readme.slice(readme.indexOf('\n## Errors\n'), readme.indexOf('\n## SIEM forwarding\n'));

describe('README Errors section', () => {
  test('exists, with the API and the command line', () => {
    expect(section.length).toBeGreaterThan(0);
    expect(section).toContain('### API');
    expect(section).toContain('### Command line');
  });

  test('names every API error code with its status', () => {
    const codes = new Map<string, number>();
    for (const [status, code] of Object.entries(STATUS_CODES)) codes.set(code, Number(status));
    for (const [status, code] of Object.values(CODE_STATUS)) codes.set(code, status);
    for (const e of CLICKHOUSE_ERRORS) codes.set(e.code, e.status);
    codes.set('internal_error', 500);
    const rows = new Map<string, string>();
    for (const line of section.split('\n')) {
      const cells = line.split('|').map((c) => c.trim());
      if (!/^\d{3}/.test(cells[1] ?? '')) continue;
      const statuses = cells[1]!.split(',').map((x) => x.trim());
      const names = [...cells[2]!.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!);
      for (const [i, n] of names.entries()) rows.set(n, statuses[Math.min(i, statuses.length - 1)]!);
      for (const m of cells[3]!.matchAll(/`([a-z_]+)` for other (\d{3})s/g)) rows.set(m[1]!, m[2]!);
    }
    for (const [code, status] of codes) expect([code, rows.get(code)]).toEqual([code, String(status)]);
  });

  test('names every project error code with the API code it maps to', () => {
    for (const [code, [, api]] of Object.entries(CODE_STATUS)) {
      const mapping = new RegExp(`\`${code}\`[^;]*→ \\d{3} \`${api}\``);
      expect(section, code).toMatch(mapping);
    }
  });

  test('gives the command line exit codes', () => {
    const exits = [...section.matchAll(/^\| ([0-2]) \|/gm)].map((m) => m[1]);
    expect(exits).toEqual(['0', '1', '2']);
  });
});
