import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import { type Config, configSchema } from '../../src/config/schema.js';
import type { Finding } from '../../src/findings/model.js';
import { FindingStore } from '../../src/findings/store.js';
import { createSiemForwarder, FindingOutbox, type SiemForwarder } from '../../src/siem/index.js';
import { DetectionHarness } from '../support/detection.js';
import { type Received, RSYSLOGD, Rsyslog, rsyslogVersion } from '../support/rsyslog.js';
import { freeTcpPort, sleep, waitFor } from '../support/service.js';
import { scanUpdate, TEST_DETECTOR, testRun } from '../support/siem-findings.js';

/**
 * At-least-once delivery through faults, against a real rsyslog on TCP: the receiver is down while
 * findings accumulate, the forwarder is stopped and started again (a flowsentry restart), then the
 * receiver comes back; later the receiver is killed (SIGKILL) in the middle of a stream and started
 * again. Every finding must arrive at least once, the backlog in version order.
 */

if (!RSYSLOGD) {
  if (process.env.FLOWSENTRY_REQUIRE_PEERS === '1') {
    test('rsyslog is installed (FLOWSENTRY_REQUIRE_PEERS=1)', () => expect(RSYSLOGD).not.toBeNull());
  } else {
    test.skip('SIEM delivery faults: needs rsyslog (apt-get install rsyslog)', () => {});
  }
} else {
  describe(`SIEM delivery through receiver outages and restarts (rsyslog ${rsyslogVersion()})`, () => {
    let h: DetectionHarness;
    let rsyslog: Rsyslog;
    let store: FindingStore;
    let config: Config;
    let forwarder: SiemForwarder | null = null;
    let serial = 0;
    const recorded: string[] = [];

    const open = async () => {
      const f = createSiemForwarder(config, { store: h.store, log: silentLogger(), version: '0' });
      await f.start();
      forwarder = f;
      return f;
    };
    const status = () => forwarder!.status()[0]!;
    const idOf = (r: Received) => r.sdFindingId;
    const versionOf = (r: Received) => Number(r.parsed['rfc5424-sd']!['flowsentry@32473']!.version);

    /** n new findings, each written by its own run (its own version). */
    async function record(n: number): Promise<void> {
      const t = Date.now() - 20 * 60_000;
      for (let i = 0; i < n; i++) {
        serial++;
        const { created } = await store.record(
          TEST_DETECTOR,
          [
            scanUpdate(
              `198.51.${100 + Math.floor(serial / 250)}.${serial % 250}`,
              '10.1.1.10',
              t + serial * 1000,
            ),
          ],
          testRun(`fault-${serial}`),
        );
        recorded.push(...created);
      }
    }

    const arrived = (ids: readonly string[]) =>
      rsyslog.waitFor(
        'tcp',
        (got) => {
          const seen = new Set(got.map(idOf));
          return ids.every((id) => seen.has(id));
        },
        60_000,
        `${ids.length} findings`,
      );

    beforeAll(async () => {
      h = await DetectionHarness.open();
      store = new FindingStore(h.store);
      const port = await freeTcpPort();
      rsyslog = new Rsyslog(h.dir.path, [{ name: 'tcp', kind: 'tcp', port }]);
      config = configSchema.parse({
        dataDir: h.dir.path,
        siem: {
          syslogUrl: `tcp://127.0.0.1:${port}`,
          format: 'rfc5424',
          pollIntervalMs: 200,
          resendSeconds: 5,
          retry: { minMs: 100, maxMs: 500 },
        },
      });
    });

    afterAll(async () => {
      await forwarder?.stop();
      await rsyslog?.stop();
      await h?.close();
    });

    test('receiver down: findings accumulate, nothing counts as sent, the backlog is reported', async () => {
      await open();
      await record(15);
      const s = await waitFor(
        async () => {
          const x = status();
          return x.queued === 15 && x.connectionFailures >= 3 ? x : undefined;
        },
        20_000,
        '15 queued findings and failed connects',
      );
      expect(s).toMatchObject({
        sent: 0,
        connected: false,
        lastError: expect.stringMatching(/ECONNREFUSED/),
      });
      expect(s.oldestUnsentAgeSeconds).toBeGreaterThan(0);
    });

    test('the forwarder restarts (receiver still down), the receiver comes back: every finding arrives, in order', async () => {
      await forwarder!.stop();
      // Nothing was delivered, so the saved position is below every finding.
      const saved = await new FindingOutbox(h.store).load('default');
      const findings: Finding[] = await h.findings();
      expect(saved!.position).toBeLessThan(Math.min(...findings.map((f) => f.version)));
      expect(saved!.sent).toEqual([]);

      await record(15);
      await open();
      await sleep(1_000);
      expect(status()).toMatchObject({ sent: 0, connected: false });
      await rsyslog.start();
      const got = await arrived(recorded);
      expect(recorded).toHaveLength(30);
      // The backlog drained in the order the versions were written.
      const firstArrivals = got.filter((r, i) => got.findIndex((x) => idOf(x) === idOf(r)) === i);
      const versions = firstArrivals.map(versionOf);
      expect(versions).toEqual([...versions].sort((a, b) => a - b));
      await waitFor(async () => (status().queued === 0 ? true : undefined), 10_000, 'an empty queue');
      expect(status()).toMatchObject({ connected: true, queued: 0, oldestUnsentAgeSeconds: 0 });
      expect(status().sent).toBeGreaterThanOrEqual(30);
    });

    test('the receiver is killed mid-stream and restarted: what was in flight is sent again, none missing', async () => {
      const before = status();
      await record(5);
      await arrived(recorded);
      await rsyslog.kill();
      await record(10);
      // The connection error is noticed (the kernel reports the dead peer) and connects are retried.
      await waitFor(
        async () => (status().connectionFailures > before.connectionFailures ? true : undefined),
        20_000,
        'the broken connection',
      );
      await sleep(500);
      await rsyslog.start();
      const got = await arrived(recorded);
      expect(recorded).toHaveLength(45);
      const counts = new Map<string, number>();
      for (const r of got) counts.set(idOf(r), (counts.get(idOf(r)) ?? 0) + 1);
      expect(recorded.filter((id) => !counts.has(id))).toEqual([]);
      // At least once: the last seconds before the kill were sent again.
      expect(status().resent).toBeGreaterThan(before.resent);
      // Every message carries id and version, so the duplicates can be told apart and dropped.
      const pairs = new Set(got.map((r) => `${idOf(r)}@${versionOf(r)}`));
      expect(pairs.size).toBe(recorded.length);
    });

    test('a clean stop confirms what was sent: the next start sends nothing again', async () => {
      await waitFor(async () => (status().queued === 0 ? true : undefined), 10_000, 'an empty queue');
      const count = rsyslog.received('tcp').length;
      await forwarder!.stop();
      const saved = await new FindingOutbox(h.store).load('default');
      const findings = await h.findings();
      expect(saved!.position).toBeGreaterThanOrEqual(Math.max(...findings.map((f) => f.version)));
      await open();
      await sleep(2_000);
      expect(rsyslog.received('tcp')).toHaveLength(count);
      expect(status().sent).toBe(0);
    });
  });
}
