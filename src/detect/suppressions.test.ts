import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DetectionHarness, trafficBase } from '../../test/support/detection.js';
import { TrafficBuilder } from '../../test/support/packets.js';
import { AllowlistStore } from '../findings/allowlist.js';
import { DetectionEngine, type SuppressionSource } from './engine.js';
import { AddressSet } from './networks.js';
import { DETECTORS } from './registry.js';

/**
 * The engine honours analyst allowlist rules (EngineDeps.suppressions), read at every window: a rule
 * drops the observations matching both of its sides, for its detector or every detector.
 */

const S = 1_000_000;
let h: DetectionHarness;
let range: { from: number; to: number };

beforeAll(async () => {
  h = await DetectionHarness.open();
  const t0 = trafficBase(90);
  const b = new TrafficBuilder();
  for (let i = 0; i < 30; i++) b.synProbe(t0 + i * S, '203.0.113.1', '10.4.0.1', 40_000, 1 + i, 'rst');
  for (let i = 0; i < 30; i++) b.synProbe(t0 + i * S, '203.0.113.1', '10.4.0.2', 40_001, 1 + i, 'rst');
  for (let i = 0; i < 30; i++) b.synProbe(t0 + i * S, '203.0.113.2', '10.4.0.1', 40_002, 1 + i, 'rst');
  const loaded = await h.load(b);
  range = { from: loaded.firstMs - 60_000, to: loaded.lastMs + 60_000 };
}, 120_000);
afterAll(async () => h?.close());

/** The scans each rule set leaves, as "src>dst", from a fresh store of findings each time. */
async function scansWith(rules: Array<{ detector: string | null; src: string | null; dst: string | null }>) {
  await h.store.client.command({ query: 'TRUNCATE TABLE findings' });
  await h.store.client.command({ query: 'TRUNCATE TABLE finding_contributions' });
  await h.store.client.command({ query: 'TRUNCATE TABLE allowlist_rules' });
  const allowlist = new AllowlistStore(h.store);
  for (const r of rules) {
    await allowlist.create({
      detector: r.detector,
      srcCidr: r.src,
      dstCidr: r.dst,
      comment: '',
      actor: 't',
      expiresAt: null,
      findingId: null,
    });
  }
  const { engine } = h.detection();
  const result = await engine.backfill(range);
  expect(result.detectors.flatMap((d) => d.errors)).toEqual([]);
  return (await h.findings('vertical-port-scan')).map((f) => `${f.src_ip}>${f.dst_ip}`).sort();
}

describe('allowlist rules in the engine', () => {
  test('src, dst and pair rules drop exactly the observations they match; rules of other detectors do not', async () => {
    const all = ['203.0.113.1>10.4.0.1', '203.0.113.1>10.4.0.2', '203.0.113.2>10.4.0.1'];
    expect(await scansWith([])).toEqual(all);
    expect(await scansWith([{ detector: null, src: '203.0.113.1/32', dst: null }])).toEqual([
      '203.0.113.2>10.4.0.1',
    ]);
    expect(await scansWith([{ detector: 'vertical-port-scan', src: null, dst: '10.4.0.1' }])).toEqual([
      '203.0.113.1>10.4.0.2',
    ]);
    expect(await scansWith([{ detector: null, src: '203.0.113.1', dst: '10.4.0.1' }])).toEqual([
      '203.0.113.1>10.4.0.2',
      '203.0.113.2>10.4.0.1',
    ]);
    expect(await scansWith([{ detector: 'another-detector', src: '203.0.113.0/24', dst: null }])).toEqual(
      all,
    );
  });

  test('rules are read at every window; a failure to read them fails the window (retried), it does not skip them', async () => {
    let reads = 0;
    const failing: SuppressionSource = {
      async rulesFor() {
        reads++;
        throw new Error('allowlist unavailable');
      },
    };
    const counting: SuppressionSource = {
      async rulesFor() {
        reads++;
        return [{ src: new AddressSet(['203.0.113.0/24']), dst: null }];
      },
    };
    const { engine, findings, runs, threatIntel } = h.detection();
    const deps = { store: h.store, findings, runs, threatIntel, log: h.log };
    const options = {
      internalNetworks: [...engine.internal.cidrs],
      allowlist: { src: [], dst: [] },
      detectors: {},
      queryTimeoutSeconds: 60,
      lagSeconds: 0,
    };
    const broken = new DetectionEngine({ ...deps, suppressions: failing }, DETECTORS, options);
    const r = await broken.backfill(range);
    expect(r.detectors[0]!.errors).toEqual(['allowlist unavailable']);
    expect(reads).toBe(r.windows);
    reads = 0;
    await h.store.client.command({ query: 'TRUNCATE TABLE findings' });
    const quiet = new DetectionEngine({ ...deps, suppressions: counting }, DETECTORS, options);
    const q = await quiet.backfill(range);
    expect(reads).toBe(q.windows);
    expect(q.findings_created).toBe(0);
  });
});
