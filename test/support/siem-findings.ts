import type { Finding } from '../../src/findings/model.js';
import type { DetectorRef, FindingUpdate, RunRef } from '../../src/findings/store.js';

/** A finding as the store returns it, for format tests. */
export function sampleFinding(overrides: Partial<Finding> = {}): Finding {
  return {
    id: '1b4e28ba-2fa1-8d2c-a1b2-0123456789ab',
    detector: 'vertical-port-scan',
    title: 'Port scan of 10.1.1.10 by 198.51.100.66: 200 TCP ports probed',
    severity: 'high',
    confidence: 0.875,
    status: 'open',
    tactic_ids: ['TA0007', 'TA0006'],
    technique_ids: ['T1046', 'T1110.001'],
    src_ip: '198.51.100.66',
    dst_ip: '10.1.1.10',
    related_ips: ['10.1.1.11', '10.1.1.12'],
    first_seen: '2026-01-02T03:04:05.006Z',
    last_seen: '2026-01-02T03:14:05.006Z',
    flows: 200,
    bytes: 12_000,
    packets: 400,
    evidence: { distinct_ports: 200, ports_sample: [22, 80, 139] },
    created_at: '2026-01-02T03:15:00.000Z',
    updated_at: '2026-01-02T03:16:00.000Z',
    key: '198.51.100.66|10.1.1.10',
    exporters: ['192.0.2.250'],
    windows: 2,
    run_mode: 'scheduled',
    run_id: 'run-1',
    forward: true,
    version: 1_767_323_760_000,
    ...overrides,
  };
}

/** Every character the formats must escape or replace, plus non-ASCII. */
export const HOSTILE = 'a|b=c\\d"e]f[g\nh\ri\tj\u0000k\u0085l é 日本 🛰️ end';

/** A detector for FindingStore.record() in tests (ids must exist in src/detect/attack.ts). */
export const TEST_DETECTOR: DetectorRef = { id: 'vertical-port-scan', cooldownMs: 3_600_000 };

export function testRun(id: string, forward = true): RunRef {
  return { runId: id, mode: forward ? 'scheduled' : 'backfill', windowKey: `w-${id}`, forward };
}

/** One window's observation of a scan from `src` to `dst` at `t` (epoch ms). */
export function scanUpdate(
  src: string,
  dst: string,
  t: number,
  overrides: Partial<FindingUpdate> = {},
): FindingUpdate {
  return {
    key: `${src}|${dst}`,
    title: `Port scan of ${dst} by ${src}`,
    severity: 'medium',
    confidence: 0.8,
    techniqueIds: ['T1046'],
    tacticIds: ['TA0007'],
    srcIp: src,
    dstIp: dst,
    relatedIps: [],
    firstSeen: t,
    lastSeen: t + 30_000,
    flows: 40,
    bytes: 2_400,
    packets: 40,
    exporters: ['192.0.2.250'],
    evidence: { distinct_ports: 40 },
    ...overrides,
  };
}
