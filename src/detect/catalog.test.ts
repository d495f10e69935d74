import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { isTechniqueId, TACTICS, TECHNIQUES } from './attack.js';
import { DETECTORS } from './registry.js';

/**
 * Conventions every detector of the registry keeps (after Elastic's test_all_rules.py): a unique
 * kebab-case id with its own folder holding the query and the tests, known ATT&CK techniques,
 * parameters whose defaults validate, a lookback covering the interval, documented false positives.
 */
const here = dirname(fileURLToPath(import.meta.url));

describe('detector catalog', () => {
  test('ids are unique and kebab-case', () => {
    const ids = DETECTORS.map((d) => d.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/);
  });

  for (const d of DETECTORS) {
    test(`${d.id}: folder, techniques, parameters, schedule and false positives`, () => {
      const folder = join(here, 'detectors', d.id);
      expect(existsSync(join(folder, 'detector.ts')), `${folder}/detector.ts`).toBe(true);
      expect(existsSync(join(folder, 'detector.test.ts')), `${folder}/detector.test.ts`).toBe(true);
      expect(existsSync(join(folder, 'query.sql')), `${folder}/query.sql`).toBe(true);
      expect(d.techniques.length).toBeGreaterThan(0);
      for (const t of d.techniques) {
        expect(isTechniqueId(t), `${t} in attack.ts`).toBe(true);
        for (const tactic of TECHNIQUES[t].tactics) expect(Object.hasOwn(TACTICS, tactic)).toBe(true);
      }
      expect(d.params.safeParse({}).success).toBe(true);
      expect(d.params.safeParse({ noSuchParameter: 1 }).success, 'params must reject unknown keys').toBe(
        false,
      );
      expect(d.lookbackSeconds).toBeGreaterThanOrEqual(d.intervalSeconds);
      expect(d.intervalSeconds).toBeGreaterThanOrEqual(10);
      expect(d.falsePositives.length).toBeGreaterThan(0);
      expect(d.title.length).toBeGreaterThan(3);
      expect(d.description.length).toBeGreaterThan(20);
    });
  }
});

describe('README detector table', () => {
  const readme = readFileSync(join(here, '..', '..', 'README.md'), 'utf8');
  const rows = new Map(
    [...readme.matchAll(/^\| `([a-z0-9-]+)` \| ([^|]+) \| (\w+) \|/gm)].map((m) => [
      m[1]!,
      { techniques: m[2]!.trim().split(', '), severity: m[3]! },
    ]),
  );

  test('lists every detector of the registry, and only those, in the registry order', () => {
    expect([...rows.keys()]).toEqual(DETECTORS.map((d) => d.id));
  });

  for (const d of DETECTORS) {
    test(`${d.id}: techniques and severity as the code has them`, () => {
      expect(rows.get(d.id)).toEqual({ techniques: [...d.techniques], severity: d.severity });
    });
  }
});

/**
 * The README's "Parameters and known false positives" block, generated from the registry so that it
 * cannot drift: FLOWSENTRY_WRITE_DOCS=1 rewrites it, otherwise the test compares.
 */
function catalogBlock(): string {
  const value = (v: unknown) => (Array.isArray(v) ? `${v.length} entries` : String(v));
  return DETECTORS.map((d) => {
    const params = Object.entries(d.params.parse({}) as Record<string, unknown>)
      .filter(([, v]) => typeof v !== 'object' || Array.isArray(v))
      .map(([k, v]) => `\`${k}\` ${value(v)}`)
      .join(', ');
    return `- **\`${d.id}\`**: ${params}. False positives: ${d.falsePositives.join('; ')}.`;
  }).join('\n');
}

describe('README parameters and false positives', () => {
  const file = join(here, '..', '..', 'README.md');
  const begin = '<!-- detectors:catalog begin -->\n';
  const end = '\n<!-- detectors:catalog end -->';

  test('list every detector with its default parameters and known false positives, as the code has them', () => {
    const readme = readFileSync(file, 'utf8');
    const from = readme.indexOf(begin);
    const to = readme.indexOf(end);
    expect(from, 'README markers').toBeGreaterThan(0);
    expect(to).toBeGreaterThan(from);
    if (process.env.FLOWSENTRY_WRITE_DOCS === '1') {
      writeFileSync(file, readme.slice(0, from + begin.length) + catalogBlock() + readme.slice(to));
    } else {
      expect(
        readme.slice(from + begin.length, to),
        'FLOWSENTRY_WRITE_DOCS=1 npx vitest run src/detect/catalog.test.ts',
      ).toBe(catalogBlock());
    }
  });
});
