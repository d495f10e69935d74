import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { z } from 'zod';
import { DetectionHarness, trafficBase } from '../../test/support/detection.js';
import { TrafficBuilder } from '../../test/support/packets.js';
import { queryRows } from '../storage/clickhouse.js';
import { defineDetector } from './detector.js';
import { InProcessScheduler } from './scheduler.js';

/**
 * The engine's guarantees, on real flows in the embedded store: stable finding ids, activity extended
 * across windows and counted once, the cool-down, analyst status kept, backfills that do not double
 * counters, allowlists, the storage horizon, and scheduled windows that resume from the watermark
 * without gaps or repeats.
 */

const S = 1_000_000;
const T0 = trafficBase(180);
/** A second, recent stretch of traffic for the scheduler (its windows follow the wall clock). */
const RECENT = trafficBase(6);

/** Counts flows per source: a minimal detector whose counters are easy to check. */
const flowsPerSource = defineDetector({
  id: 'flows-per-source',
  title: 'Flows per source',
  description: 'test detector',
  techniques: ['T1046'],
  severity: 'low',
  intervalSeconds: 60,
  lookbackSeconds: 60,
  cooldownSeconds: 600,
  falsePositives: [],
  params: z.strictObject({ minFlows: z.number().default(1) }),
  async run(ctx) {
    const rows = await ctx.query<{
      src: string;
      n: number;
      first: string;
      last: string;
      b: number;
      p: number;
    }>(
      `SELECT src_addr AS src, countIf(in_window = 1) AS n, sumIf(bytes, in_window = 1) AS b,
              sumIf(packets, in_window = 1) AS p, min(flow_start) AS first, max(flow_end) AS last
       FROM {{flows}} GROUP BY src HAVING n >= {min:UInt32}`,
      { min: ctx.params.minFlows },
    );
    return rows.map((r) => ({
      key: [r.src],
      title: `flows from ${r.src}`,
      confidence: 1,
      srcIp: r.src,
      dstIp: null,
      firstSeen: r.first,
      lastSeen: r.last,
      flows: r.n,
      bytes: r.b,
      packets: r.p,
      evidence: { n: r.n },
    }));
  },
});

let h: DetectionHarness;
let scanFlows = 0;

/**
 * Loads traffic one minute at a time, as an exporter with a one-minute timeout exports it: every flow
 * is received at the end of its minute (softflowd reading a file exports everything at its end).
 */
async function loadByMinute(
  first: number,
  minutes: number,
  add: (b: TrafficBuilder, minute: number) => void,
) {
  for (let m = 0; m < minutes; m++) {
    const b = new TrafficBuilder();
    add(b, first + m * 60 * S);
    if (b.packets > 0) await h.load(b);
  }
}

beforeAll(async () => {
  h = await DetectionHarness.open();
  // A slow scan spread over 4 minutes: 240 ports, one probe a second.
  await loadByMinute(T0, 4, (b, minute) => {
    for (let i = 0; i < 60; i++) {
      const n = (minute - T0) / S + i;
      b.synProbe(T0 + n * S, '203.0.113.9', '10.2.0.1', 40_000, 1 + n, 'none');
    }
  });
  scanFlows = 240;
  const later = new TrafficBuilder();
  // The same pair again 2 hours later: past the one-hour cool-down (and an hour before the recent traffic).
  for (let i = 0; i < 60; i++)
    later.synProbe(T0 + 2 * 3600 * S + i * S, '203.0.113.9', '10.2.0.1', 41_000, 1 + i, 'none');
  // An allowlisted scanner.
  for (let i = 0; i < 60; i++)
    later.synProbe(T0 + 600 * S + i * S, '203.0.113.200', '10.2.0.2', 42_000, 1 + i, 'none');
  await h.load(later);
  // Recent DNS traffic for the scheduler, whose windows follow the wall clock: 100 exchanges in 5 minutes.
  await loadByMinute(RECENT, 5, (b, minute) => {
    for (let i = 0; i < 20; i++) {
      const n = ((minute - RECENT) / S / 60) * 20 + i;
      b.udpExchange(minute + i * 3 * S, `10.3.0.${1 + (n % 5)}`, '192.0.2.53', 30_000 + n, 53, 40, 120);
    }
  });
}, 120_000);

afterAll(async () => {
  await h?.close();
});

const scanFindings = async () =>
  (await h.findings('vertical-port-scan')).filter((f) => f.src_ip === '203.0.113.9');

describe('detection engine', () => {
  test('scheduled windows extend one finding and count each flow once; a window run again changes nothing', async () => {
    const { engine } = h.detection();
    // Scheduled windows of time_received (the export time here), a minute each, over the first scan.
    const start = Math.floor(T0 / 1000 / 60_000) * 60_000 - 60_000;
    const windows = [];
    for (let from = start; from < start + 7 * 60_000; from += 60_000) {
      windows.push({
        mode: 'scheduled' as const,
        from,
        to: from + 60_000,
        contextFrom: from - 240_000,
        range: null,
      });
    }
    for (const w of windows) await engine.runWindow('vertical-port-scan', w);
    let [f] = await scanFindings();
    expect(await scanFindings()).toHaveLength(1);
    expect(f!.flows).toBe(scanFlows);
    expect(f!.windows).toBeGreaterThanOrEqual(4);
    expect(f!.evidence.distinct_ports).toBeGreaterThanOrEqual(200);
    const { id, version } = f!;
    // The same windows again (a retried job, a restart before the run was recorded).
    for (const w of windows) await engine.runWindow('vertical-port-scan', w);
    [f] = await scanFindings();
    expect(await scanFindings()).toHaveLength(1);
    expect(f!.id).toBe(id);
    expect(f!.flows).toBe(scanFlows);
    expect(f!.version).toBeGreaterThan(version);
    expect(Date.parse(f!.first_seen)).toBeGreaterThanOrEqual(Math.floor(T0 / 1000) - 1000);
    expect(Date.parse(f!.last_seen)).toBeLessThanOrEqual(Math.ceil(T0 / 1000) + 241_000);
  });

  test('a backfill over the same traffic updates the same finding without doubling its counters', async () => {
    const { engine } = h.detection();
    const [before] = await scanFindings();
    const result = await engine.backfill({
      from: T0 / 1000 - 60_000,
      to: T0 / 1000 + 600_000,
      detectors: ['vertical-port-scan'],
    });
    expect(result.findings_created).toBe(0);
    expect(result.findings_updated).toBe(1);
    const after = await scanFindings();
    expect(after).toHaveLength(1);
    expect(after[0]!.id).toBe(before!.id);
    expect(after[0]!.flows).toBe(scanFlows);
    expect(after[0]!.run_mode).toBe('backfill');
  });

  test('activity after the cool-down opens a new finding; the global allowlist drops a scanner', async () => {
    const { engine } = h.detection({ allowlist: { src: ['203.0.113.200/32'] } });
    const result = await engine.backfill({
      from: T0 / 1000 - 60_000,
      to: T0 / 1000 + 3 * 3600_000,
      detectors: ['vertical-port-scan'],
    });
    const scans = await scanFindings();
    expect(scans).toHaveLength(2);
    expect(scans[1]!.id).not.toBe(scans[0]!.id);
    expect(Date.parse(scans[1]!.first_seen) - Date.parse(scans[0]!.last_seen)).toBeGreaterThan(3600_000);
    expect(scans[1]!.flows).toBe(60);
    expect(result.findings_created).toBe(1);
    expect((await h.findings('vertical-port-scan')).some((f) => f.src_ip === '203.0.113.200')).toBe(false);
  });

  test("an analyst's status survives detector updates and is kept in the history", async () => {
    const { engine, findings } = h.detection();
    const [first] = await scanFindings();
    const changed = await findings.setStatus(first!.id, 'acknowledged', 'alice', 'looking into it');
    expect(changed!.status).toBe('acknowledged');
    await engine.backfill({
      from: T0 / 1000 - 60_000,
      to: T0 / 1000 + 600_000,
      detectors: ['vertical-port-scan'],
    });
    const again = await findings.get(first!.id);
    expect(again!.status).toBe('acknowledged');
    const events = await queryRows<{ actor: string; to_status: string; comment: string }>(
      h.store,
      'SELECT actor, to_status, comment FROM finding_events WHERE finding_id = {id:String}',
      { id: first!.id },
    );
    expect(events).toEqual([{ actor: 'alice', to_status: 'acknowledged', comment: 'looking into it' }]);
  });

  test('a window is not due before its end is lag in the past and storage holds everything before it', () => {
    const { engine } = h.detection({ lagSeconds: 15 });
    const now = Date.UTC(2026, 0, 1, 12, 0, 40);
    const wm = Date.UTC(2026, 0, 1, 11, 59, 0);
    const due = engine.nextWindow('vertical-port-scan', wm, now, now);
    expect(due).toMatchObject({
      due: true,
      window: { from: wm, to: wm + 60_000, contextFrom: wm - 240_000 },
    });
    // Storage still waits for flows received at 11:59:30: the window ending at 12:00 waits too.
    const held = engine.nextWindow('vertical-port-scan', wm, now, Date.UTC(2026, 0, 1, 11, 59, 30));
    expect(held.due).toBe(false);
    // Behind schedule: windows widen up to max(interval, lookback) to catch up.
    const behind = engine.nextWindow('vertical-port-scan', wm - 3600_000, now, now);
    expect(behind).toMatchObject({ due: true, window: { from: wm - 3600_000, to: wm - 3600_000 + 300_000 } });
  });

  test('the in-process scheduler resumes from the watermark: contiguous windows, none twice, across a restart', async () => {
    const detection = h.detection({ lagSeconds: 1 }, [flowsPerSource]);
    const watermark = Math.floor(RECENT / 1000 / 60_000) * 60_000 - 60_000;
    await detection.runs.record({
      runId: 'seed',
      detector: 'flows-per-source',
      mode: 'scheduled',
      windowFrom: watermark - 60_000,
      windowTo: watermark,
      startedAt: Date.now(),
      finishedAt: Date.now(),
      observations: 0,
      findingsCreated: 0,
      findingsUpdated: 0,
      error: null,
      worker: 'test',
    });
    // Runs the scheduler until the watermark reaches `until`, then stops it (a restart follows).
    const runUntil = async (until: number) => {
      const scheduler = new InProcessScheduler(detection.engine, detection.runs, () => Date.now(), h.log);
      await scheduler.start();
      for (let i = 0; i < 200 && ((await detection.runs.watermark('flows-per-source')) ?? 0) < until; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      await scheduler.stop();
    };
    await runUntil(watermark + 120_000);
    const firstStop = (await detection.runs.watermark('flows-per-source'))!;
    expect(firstStop).toBeGreaterThanOrEqual(watermark + 120_000);
    expect(firstStop).toBeLessThan(Math.floor((Date.now() - 1000) / 60_000) * 60_000);
    await runUntil(Math.floor((Date.now() - 1000) / 60_000) * 60_000);
    const windows = await queryRows<{ from: string; to: string }>(
      h.store,
      `SELECT window_from AS from, window_to AS to FROM detector_runs
       WHERE detector = 'flows-per-source' AND run_mode = 'scheduled' AND status = 'ok' AND run_id != 'seed'
       ORDER BY window_from`,
    );
    expect(windows[0]!.from).toBe(new Date(watermark).toISOString());
    expect(windows.length).toBeGreaterThanOrEqual(6);
    for (let i = 1; i < windows.length; i++) expect(windows[i]!.from).toBe(windows[i - 1]!.to);
    const [{ flows = 0 } = {}] = await queryRows<{ flows: number }>(
      h.store,
      `SELECT sum(flows) AS flows FROM findings FINAL WHERE detector = 'flows-per-source'`,
    );
    // Every flow of the recent traffic (100 requests, 100 answers) counted exactly once.
    expect(Number(flows)).toBe(200);
  });
});
