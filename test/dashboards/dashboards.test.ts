import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { TACTICS, TECHNIQUES } from '../../src/detect/attack.js';
import { DETECTORS } from '../../src/detect/registry.js';
import { queryRows } from '../../src/storage/clickhouse.js';
import { ApiFixture } from '../support/api.js';
import { expandMacros, type MacroContext, unexpandedTokens } from '../support/grafana-macros.js';
import { REPO_ROOT } from '../support/service.js';

/**
 * The provisioned Grafana dashboards (dashboards/*.json): every ClickHouse panel's SQL, with the
 * plugin's macros expanded as the plugin does, runs on the embedded ClickHouse after the migrations,
 * over real flows (softflowd exports decoded by the collector's decoder, two exporters) and the
 * findings and run log the detection engine made of them, and returns rows. Prometheus panels are
 * checked against the names GET /metrics exposes in test/integration/metrics.test.ts.
 */

interface Target {
  refId: string;
  datasource: { type: string; uid: string };
  rawSql?: string;
  format?: number;
  queryType?: string;
  expr?: string;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  transformations?: Array<{ id: string; options: Record<string, string> }>;
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
}

const DIR = join(REPO_ROOT, 'dashboards');
const dashboards = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .map((file) => ({ file, board: JSON.parse(readFileSync(join(DIR, file), 'utf8')) as Dashboard }));
const clickhousePanels = dashboards.flatMap(({ file, board }) =>
  board.panels.flatMap((panel) =>
    (panel.targets ?? [])
      .filter((t) => t.datasource.type === 'grafana-clickhouse-datasource')
      .map((target) => ({ file, panel, target })),
  ),
);
const provisioned = (
  parse(readFileSync(join(REPO_ROOT, 'deploy/grafana/provisioning/datasources/flowsentry.yaml'), 'utf8')) as {
    datasources: Array<{ uid: string; type: string }>;
  }
).datasources;

let f: ApiFixture;
let ctx: MacroContext;
beforeAll(async () => {
  f = await ApiFixture.open();
  // A dashboard opened now on the last few hours, as Grafana would ask (60 s per point).
  ctx = { fromMs: f.firstMs - 3_600_000, toMs: Date.now() + 60_000, intervalMs: 60_000 };
}, 180_000);
afterAll(async () => {
  await f?.close();
});

describe('dashboards', () => {
  test('three dashboards with unique uids; every panel uses a provisioned data source', () => {
    expect(dashboards.map((d) => d.file).sort()).toEqual([
      'collector-health.json',
      'findings.json',
      'traffic-overview.json',
    ]);
    expect(new Set(dashboards.map((d) => d.board.uid)).size).toBe(dashboards.length);
    const known = new Set(provisioned.map((d) => `${d.type}/${d.uid}`));
    for (const { board } of dashboards) {
      const ids = board.panels.map((p) => p.id);
      expect(new Set(ids).size, board.title).toBe(ids.length);
      for (const panel of board.panels.filter((p) => p.type !== 'row')) {
        expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
        for (const t of panel.targets ?? [])
          expect(known.has(`${t.datasource.type}/${t.datasource.uid}`), `${panel.title} ${t.refId}`).toBe(
            true,
          );
      }
    }
    expect(clickhousePanels.length).toBeGreaterThanOrEqual(20);
  });

  test('macros expand as the plugin expands them', () => {
    const c = { fromMs: 1_700_000_000_500, toMs: 1_700_003_600_900, intervalMs: 30_000 };
    expect(expandMacros('WHERE $__timeFilter(t) AND d = 1', c)).toBe(
      'WHERE t >= toDateTime(1700000000) AND t <= toDateTime(1700003600) AND d = 1',
    );
    expect(expandMacros('$__timeFilter_ms( t )', c)).toBe(
      't >= fromUnixTimestamp64Milli(1700000000500) AND t <= fromUnixTimestamp64Milli(1700003600900)',
    );
    expect(expandMacros('$__timeInterval(t) / $__interval_s', c)).toBe(
      'toStartOfInterval(toDateTime(t), INTERVAL 30 second) / 30',
    );
    expect(expandMacros('$__timeInterval_ms(t)', c)).toBe(
      'toStartOfInterval(toDateTime64(t, 3), INTERVAL 30000 millisecond)',
    );
    expect(expandMacros('$__fromTime..$__toTime', c)).toBe('toDateTime(1700000000)..toDateTime(1700003600)');
    expect(expandMacros('$__dt(d, t)', c)).toBe(
      "(d >= toDate('2023-11-14') AND d <= toDate('2023-11-14')) AND (t >= toDateTime(1700000000) AND t <= toDateTime(1700003600))",
    );
    // An interval below a second is one second.
    expect(expandMacros('$__interval_s', { ...c, intervalMs: 200 })).toBe('1');
    expect(() => expandMacros('$__timeFilter(a, b)', c)).toThrow(/expected 1 argument/);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a Grafana dashboard variable, not a template
    expect(unexpandedTokens(expandMacros('$__timeFilter(t) AND $__nope AND ${var}', c))).toEqual([
      '$__nope',
      '${var',
    ]);
  });

  test('the fixture has what the panels read: flows from two exporters, open findings, detector runs', async () => {
    const [counts] = await queryRows<{ flows: number; exporters: number; findings: number; runs: number }>(
      f.store,
      `SELECT (SELECT count() FROM flows) AS flows, (SELECT uniqExact(exporter_address) FROM flows_1m) AS exporters,
         (SELECT count() FROM findings FINAL WHERE status = 'open') AS findings, (SELECT count() FROM detector_runs) AS runs`,
    );
    expect(counts).toEqual({ flows: f.records, exporters: 2, findings: 2, runs: expect.any(Number) });
    expect(counts!.runs).toBeGreaterThan(0);
  });

  describe.each(clickhousePanels.map((p) => [`${p.file}: ${p.panel.title} (${p.target.refId})`, p] as const))(
    '%s',
    (_name, { panel, target }) => {
      test('runs on the embedded ClickHouse and returns rows', async () => {
        const sql = expandMacros(target.rawSql ?? '', ctx);
        expect(unexpandedTokens(sql)).toEqual([]);
        // Grafana's ClickHouse user should be read-only: the panels must not need more.
        const rows = await queryRows<Record<string, unknown>>(f.store, sql, {}, { readonly: true });
        expect(rows.length).toBeGreaterThan(0);
        const columns = Object.keys(rows[0]!);
        if (target.format === 0) {
          // Time series: a time column first, at least one numeric value.
          expect(target.queryType).toBe('timeSeries');
          expect(columns[0]).toBe('time');
          expect(Number.isNaN(Date.parse(String(rows[0]!.time)))).toBe(false);
          expect(Object.values(rows[0]!).some((v) => typeof v === 'number')).toBe(true);
        } else {
          expect(target.format).toBe(1);
          expect(target.queryType).toBe('table');
        }
        // Fields a transformation or a link names must be in the result.
        for (const t of panel.transformations ?? []) {
          for (const key of ['columnField', 'rowField', 'valueField'])
            if (t.options[key]) expect(columns).toContain(t.options[key]);
        }
      });
    },
  );

  test('the ATT&CK coverage panel lists exactly the (tactic, technique) pairs the detectors report, with their counts', async () => {
    const panel = dashboards
      .find((d) => d.file === 'findings.json')!
      .board.panels.find((p) => p.type !== 'row' && p.title.startsWith('ATT&CK coverage'))!;
    const expected = new Set<string>();
    for (const d of DETECTORS)
      for (const t of d.techniques)
        for (const tactic of TECHNIQUES[t].tactics)
          expected.add(`${tactic} ${TACTICS[tactic]}|${t} ${TECHNIQUES[t].name}`);
    const rows = await queryRows<{ tactic: string; technique: string; finding_count: number }>(
      f.store,
      expandMacros(panel.targets![0]!.rawSql!, ctx),
    );
    expect(new Set(rows.map((r) => `${r.tactic}|${r.technique}`))).toEqual(expected);
    expect(rows.length).toBe(expected.size);
    // The counts are those of the findings table: each finding under each of its techniques.
    const found = await queryRows<{ technique: string; n: number }>(
      f.store,
      'SELECT arrayJoin(technique_ids) AS technique, count() AS n FROM findings FINAL GROUP BY technique',
    );
    for (const r of rows) {
      const id = r.technique.split(' ')[0]!;
      expect(r.finding_count, r.technique).toBe(found.find((x) => x.technique === id)?.n ?? 0);
    }
    expect(rows.reduce((n, r) => n + r.finding_count, 0)).toBeGreaterThan(0);
  });

  test('the latest open findings link each id to GET /api/v1/findings/{id}', async () => {
    const board = dashboards.find((d) => d.file === 'findings.json')!.board as Dashboard & {
      templating: { list: Array<{ name: string }> };
    };
    const panel = board.panels.find((p) => p.title === 'Latest open findings')! as Panel & {
      fieldConfig: {
        overrides: Array<{ matcher: { options: string }; properties: Array<{ id: string; value: unknown }> }>;
      };
    };
    const link = panel.fieldConfig.overrides.find((o) => o.matcher.options === 'id')!.properties[0]!
      .value as Array<{ url: string }>;
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a template
    expect(link[0]!.url).toBe('${api_url}/api/v1/findings/${__value.raw}');
    expect(board.templating.list.map((v) => v.name)).toContain('api_url');
    const rows = await queryRows<{ id: string; detector: string }>(
      f.store,
      expandMacros(panel.targets![0]!.rawSql!, ctx),
    );
    // The ids are the API's: each one is found there.
    const app = await f.app();
    for (const r of rows) {
      const response = await app.inject({ method: 'GET', url: `/api/v1/findings/${r.id}` });
      expect(response.statusCode).toBe(200);
      expect((JSON.parse(response.body) as { detector: string }).detector).toBe(r.detector);
    }
  });
});
