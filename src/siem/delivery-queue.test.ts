import { describe, expect, test } from 'vitest';
import { sampleFinding } from '../../test/support/siem-findings.js';
import type { Finding } from '../findings/model.js';
import { DeliveryQueue } from './delivery-queue.js';

const MIN = 60_000;
const f = (id: string, version: number, extra: Partial<Finding> = {}) =>
  sampleFinding({ id, version, updated_at: new Date(version).toISOString(), ...extra });

/** Sends everything due at `now`, returning "id@version" in the order sent. */
function drain(q: DeliveryQueue, now: number): string[] {
  const out: string[] = [];
  for (let item = q.next(now); item; item = q.next(now)) {
    out.push(`${item.finding.id}@${item.finding.version}`);
    q.sent(item, now);
  }
  return out;
}

describe('DeliveryQueue', () => {
  test('versions go out in version order, whatever order they were offered in', () => {
    const q = new DeliveryQueue(5 * MIN);
    q.offer(f('b', 30));
    q.offer(f('a', 10));
    q.offer(f('c', 20));
    expect(q.minVersion()).toBe(10);
    expect(drain(q, 0)).toEqual(['a@10', 'c@20', 'b@30']);
    expect(q.size).toBe(0);
    expect(q.minVersion()).toBe(Number.POSITIVE_INFINITY);
  });

  test('a newer version of a waiting finding replaces it: the latest state wins', () => {
    const q = new DeliveryQueue(5 * MIN);
    q.offer(f('a', 10));
    q.offer(f('b', 15));
    expect(q.offer(f('a', 20))).toMatchObject({ outcome: 'replaced', previous: { version: 10 } });
    expect(q.offer(f('a', 12))).toEqual({ outcome: 'stale' });
    expect(drain(q, 0)).toEqual(['b@15', 'a@20']);
  });

  test('updates of a finding are held to one per interval; the held one is the newest', () => {
    const q = new DeliveryQueue(5 * MIN);
    const t0 = 1_000_000;
    q.offer(f('a', 1));
    expect(drain(q, t0)).toEqual(['a@1']);
    // A flood: an update every 10 s for 4 minutes.
    for (let i = 2; i <= 25; i++) q.offer(f('a', i));
    expect(q.size).toBe(1);
    expect(q.next(t0 + 4 * MIN)).toBeNull();
    expect(q.nextDueAt()).toBe(t0 + 5 * MIN);
    expect(drain(q, t0 + 5 * MIN)).toEqual(['a@25']);
    // Versions at or below the one sent are stale.
    expect(q.offer(f('a', 25))).toEqual({ outcome: 'stale' });
    expect(q.offer(f('a', 3))).toEqual({ outcome: 'stale' });
  });

  test('held updates do not hold back other findings', () => {
    const q = new DeliveryQueue(5 * MIN);
    q.offer(f('a', 1));
    drain(q, 0);
    q.offer(f('a', 2));
    q.offer(f('b', 3));
    expect(drain(q, MIN)).toEqual(['b@3']);
    expect(q.minVersion()).toBe(2);
  });

  test('a severity or status change goes out at once', () => {
    const q = new DeliveryQueue(5 * MIN);
    q.offer(f('a', 1, { severity: 'medium' }));
    drain(q, 0);
    q.offer(f('a', 2, { severity: 'high' }));
    expect(drain(q, 1_000)).toEqual(['a@2']);
    q.offer(f('a', 3, { severity: 'high', status: 'resolved' }));
    expect(drain(q, 2_000)).toEqual(['a@3']);
    q.offer(f('a', 4, { severity: 'high', status: 'resolved' }));
    expect(drain(q, 3_000)).toEqual([]);
  });

  test('resends skip the interval and may repeat a version already sent', () => {
    const q = new DeliveryQueue(5 * MIN);
    q.offer(f('a', 1));
    drain(q, 0);
    expect(q.offer(f('a', 1), true)).toEqual({ outcome: 'queued' });
    const item = q.next(1_000);
    expect(item).toMatchObject({ resend: true, finding: { version: 1 } });
    q.sent(item!, 1_000);
    // The resend did not restart the interval.
    q.offer(f('a', 2));
    expect(q.next(5 * MIN)).toMatchObject({ finding: { version: 2 } });
  });

  test('a resend is dropped when a newer version already waits', () => {
    const q = new DeliveryQueue(5 * MIN);
    q.offer(f('a', 1));
    drain(q, 0);
    q.offer(f('a', 2));
    expect(q.offer(f('a', 1), true)).toEqual({ outcome: 'stale' });
    expect(q.size).toBe(1);
  });

  test('remembered findings (after a restart) are throttled and their old versions stale', () => {
    const q = new DeliveryQueue(5 * MIN);
    q.remember('a', 10, 0);
    expect(q.offer(f('a', 9))).toEqual({ outcome: 'stale' });
    q.offer(f('a', 11, { severity: 'critical' }));
    expect(q.next(MIN)).toBeNull();
    expect(drain(q, 5 * MIN)).toEqual(['a@11']);
  });

  test('prune forgets findings sent long ago', () => {
    const q = new DeliveryQueue(MIN);
    q.offer(f('a', 1));
    drain(q, 0);
    q.prune(10 * MIN, 2 * MIN);
    // Forgotten: version 1 is no longer known to be sent, and nothing holds version 2.
    expect(q.offer(f('a', 1))).toEqual({ outcome: 'queued' });
  });

  test('oldest update among waiting versions', () => {
    const q = new DeliveryQueue(MIN);
    expect(q.oldestUpdate()).toBe(Number.POSITIVE_INFINITY);
    q.offer(f('a', 5_000));
    q.offer(f('b', 3_000));
    expect(q.oldestUpdate()).toBe(3_000);
  });
});
