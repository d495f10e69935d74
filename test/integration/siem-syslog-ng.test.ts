import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import { configSchema } from '../../src/config/schema.js';
import type { Finding } from '../../src/findings/model.js';
import { FindingStore } from '../../src/findings/store.js';
import { createSiemForwarder, type SiemForwarder } from '../../src/siem/index.js';
import { DetectionHarness } from '../support/detection.js';
import { freeTcpPort, freeUdpPort } from '../support/service.js';
import { HOSTILE, scanUpdate, TEST_DETECTOR, testRun } from '../support/siem-findings.js';
import { parseCef } from '../support/siem-parsers.js';
import { SYSLOG_NG, SyslogNg, syslogNgVersion } from '../support/syslog-ng.js';
import { makeTestCa } from '../support/test-ca.js';

/**
 * The same findings to a real syslog-ng: RFC 5424 with octet counting over TCP (what its syslog()
 * source insists on), JSON over UDP, CEF over TLS. syslog-ng parses the structured data itself and
 * its json-parser reads the JSON.
 */

if (!SYSLOG_NG) {
  const reason =
    'needs syslog-ng: on PATH, or unpacked from Debian syslog-ng-core into FLOWSENTRY_SYSLOG_NG_ROOT (.ci/run does it; the package conflicts with rsyslog)';
  if (process.env.FLOWSENTRY_REQUIRE_PEERS === '1') {
    test('syslog-ng is available (FLOWSENTRY_REQUIRE_PEERS=1)', () =>
      expect(SYSLOG_NG, reason).not.toBeNull());
  } else {
    test.skip(`SIEM forwarding to syslog-ng: ${reason}`, () => {});
  }
} else {
  describe(`SIEM forwarding to a real syslog-ng ${syslogNgVersion()}`, () => {
    let h: DetectionHarness;
    let receiver: SyslogNg;
    let forwarder: SiemForwarder;
    let findings: Finding[] = [];

    beforeAll(async () => {
      h = await DetectionHarness.open();
      const ca = makeTestCa(h.dir.path);
      const ports = { tcp: await freeTcpPort(), udp: await freeUdpPort(), tls: await freeTcpPort() };
      receiver = new SyslogNg(`${h.dir.path}/syslog-ng`, ports, {
        certFile: ca.serverCert,
        keyFile: ca.serverKey,
      });
      await receiver.start();
      const store = new FindingStore(h.store);
      const t = Date.now() - 10 * 60_000;
      for (let i = 0; i < 8; i++) {
        await store.record(
          TEST_DETECTOR,
          [
            scanUpdate(`198.51.100.${i + 1}`, '10.1.1.10', t + i * 1000, {
              title: i === 3 ? `Scan ${HOSTILE}` : `Port scan ${i}`,
              evidence: { note: i === 3 ? HOSTILE : 'plain' },
            }),
          ],
          testRun(`ng-${i}`),
        );
      }
      findings = await h.findings();
      const config = configSchema.parse({
        dataDir: h.dir.path,
        siem: {
          hostname: 'fs-ng',
          pollIntervalMs: 200,
          destinations: [
            { name: 'tcp', url: `tcp://127.0.0.1:${ports.tcp}`, format: 'rfc5424' },
            { name: 'udp', url: `udp://127.0.0.1:${ports.udp}`, format: 'json' },
            {
              name: 'tls',
              url: `tls://127.0.0.1:${ports.tls}`,
              format: 'cef',
              tls: { caFile: ca.caFile, serverName: 'siem.test' },
            },
          ],
        },
      });
      forwarder = createSiemForwarder(config, { store: h.store, log: silentLogger(), version: '0' });
      await forwarder.start();
    });

    afterAll(async () => {
      await forwarder?.stop();
      await receiver?.stop();
      await h?.close();
    });

    const want = () => new Map(findings.map((f) => [f.id, f]));

    test('TCP, octet counting, RFC 5424: syslog-ng parses every SD-PARAM', async () => {
      const got = await receiver.waitFor('tcp', (r) => r.length >= findings.length, 30_000, 'all findings');
      const byId = want();
      expect(new Set(got.map((r) => r._SDATA?.['flowsentry@32473']?.id))).toEqual(new Set(byId.keys()));
      for (const r of got) {
        const sd = r._SDATA!['flowsentry@32473']!;
        const f = byId.get(sd.id!)!;
        expect(r).toMatchObject({ HOST: 'fs-ng', PROGRAM: 'flowsentry', MSGID: 'finding' });
        expect(sd).toMatchObject({
          version: String(f.version),
          detector: f.detector,
          severity: f.severity,
          techniques: f.technique_ids.join(','),
          src_ip: f.src_ip,
          dst_ip: f.dst_ip,
          first_seen: f.first_seen,
          last_seen: f.last_seen,
        });
        expect(JSON.parse(sd.evidence!).note).toBe(
          f.evidence.note === 'plain' ? 'plain' : HOSTILE.replace('\u0000', '\uFFFD'),
        );
      }
    });

    test('UDP, JSON read by syslog-ng json-parser', async () => {
      const got = await receiver.waitFor('udp', (r) => r.length >= findings.length, 30_000, 'all findings');
      const byId = want();
      for (const r of got) {
        const doc = r.json as {
          event: { id: string; kind: string };
          source: { ip: string };
          message: string;
        };
        const f = byId.get(doc.event.id)!;
        expect(doc.event.kind).toBe('alert');
        expect(doc.source.ip).toBe(f.src_ip);
        expect(doc.message).toBe(f.title.replace('\u0000', '\uFFFD'));
      }
      expect(new Set(got.map((r) => (r.json as { event: { id: string } }).event.id))).toEqual(
        new Set(byId.keys()),
      );
    });

    test('TLS, CEF', async () => {
      const got = await receiver.waitFor('tls', (r) => r.length >= findings.length, 30_000, 'all findings');
      const ids = got.map((r) => parseCef(r.MESSAGE).extension.externalId);
      expect(new Set(ids)).toEqual(new Set(want().keys()));
    });
  });
}
