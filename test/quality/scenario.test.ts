import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Finding } from '../../src/findings/model.js';
import { DetectionHarness, trafficBase } from '../support/detection.js';
import { type Evaluation, evaluate } from '../support/evaluation.js';
import { TrafficBuilder } from '../support/packets.js';
import { buildScenario, operatorConfig, type Scenario } from '../support/scenario.js';

/**
 * Detection quality on the office-network scenario (test/support/scenario.ts): 5 hours of
 * background traffic from ~220 hosts with 17 labelled attacks, exported by softflowd in 5-minute
 * slices (a 5-minute active timeout), stored, and run through every detector as a backfill with the
 * configuration an operator would write (the vulnerability scanner and the backup jobs allowlisted,
 * the internal resolvers sanctioned, indicator lists loaded). The README's detection section reports
 * these numbers; the targets are the issue's: campaign recall ≥ 0.9 and fewer than 3 false findings an
 * hour.
 */

let h: DetectionHarness;
let scenario: Scenario;
let findings: Finding[];
let result: Evaluation;

beforeAll(async () => {
  h = await DetectionHarness.open();
  const b = new TrafficBuilder();
  scenario = buildScenario(b, { startUs: trafficBase(24 * 60) });
  const loaded = await h.load(b, { segmentSeconds: 300, maxFlows: 1_000_000 });
  const { engine } = h.detection(operatorConfig(scenario, h.dir.path));
  const run = await engine.backfill({ from: scenario.startMs, to: scenario.endMs });
  findings = await h.findings();
  result = evaluate(findings, scenario.labels, (scenario.endMs - scenario.startMs) / 3_600_000);
  const byDetector: Record<string, number> = {};
  for (const f of findings) byDetector[f.detector] = (byDetector[f.detector] ?? 0) + 1;
  const summary = {
    packets: b.packets,
    flows: loaded.records,
    hosts: scenario.hosts,
    hours: (scenario.endMs - scenario.startMs) / 3_600_000,
    backfill_seconds: run.duration_ms / 1000,
    findings: findings.length,
    by_detector: byDetector,
    detected: result.detected.map(
      (d) =>
        `${d.label.id}: ${d.findings.map((f) => `${f.detector} (${f.severity}) ${f.title}`).join(' | ')}`,
    ),
    attacks: result.attacks,
    recall: result.recall,
    false_per_hour: result.falsePerHour,
    missed: result.missed.map((l) => l.id),
    false: result.falseFindings.map((f) => `${f.detector}: ${f.title}`),
  };
  process.stderr.write(`scenario: ${JSON.stringify(summary, null, 2)}\n`);
  // The README's example finding is taken from this file.
  const dump = process.env.FLOWSENTRY_SCENARIO_FINDINGS;
  if (dump) writeFileSync(dump, JSON.stringify(findings, null, 2));
}, 600_000);

afterAll(async () => {
  await h?.close();
});

describe('detection quality on the office scenario', () => {
  test('campaign recall is at least 0.9', () => {
    expect(result.missed.map((l) => l.id)).toEqual([]);
    expect(result.recall).toBeGreaterThanOrEqual(0.9);
  });

  test('fewer than 3 false findings an hour of traffic', () => {
    expect(result.falseFindings.map((f) => `${f.detector}: ${f.title}`)).toEqual([]);
    expect(result.falsePerHour).toBeLessThan(3);
  });
});
