import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import { configSchema } from '../../src/config/schema.js';
import type { Finding } from '../../src/findings/model.js';
import { FindingStore } from '../../src/findings/store.js';
import { createSiemForwarder, type SiemForwarder } from '../../src/siem/index.js';
import { DetectionHarness } from '../support/detection.js';
import { HAS_GTLS, type Received, RSYSLOGD, Rsyslog, rsyslogVersion } from '../support/rsyslog.js';
import { freeTcpPort, freeUdpPort, waitFor } from '../support/service.js';
import { HOSTILE, scanUpdate, TEST_DETECTOR, testRun } from '../support/siem-findings.js';
import { parseCef, parseLeef, parseRfc3164 } from '../support/siem-parsers.js';
import { makeTestCa, type TestCa } from '../support/test-ca.js';

/**
 * Findings from the embedded store to a real rsyslog over UDP, TCP (octet counting and LF) and TLS
 * (server-authenticated, and mutual with a client certificate), six destinations at once with
 * different formats and filters. rsyslog parses what arrives: mmpstrucdata for RFC 5424 structured
 * data, mmjsonparse for JSON, its property replacer to pick values; CEF and LEEF are read from the
 * MSG rsyslog extracted.
 */

/** flowsentry.finding.version of a JSON message, as mmjsonparse read it. */
function jsonVersion(r: Received): number {
  return (r.parsed as { flowsentry: { finding: { version: number } } }).flowsentry.finding.version;
}

/** `text` with each of `chars` replaced by a space. */
function spaced(text: string, chars: readonly string[]): string {
  return chars.reduce((t, c) => t.replaceAll(c, ' '), text);
}

const missing = [!RSYSLOGD && 'rsyslog', !HAS_GTLS && 'rsyslog-gnutls'].filter(Boolean);

if (missing.length > 0) {
  const reason = `needs ${missing.join(' and ')} (apt-get install rsyslog rsyslog-gnutls)`;
  if (process.env.FLOWSENTRY_REQUIRE_PEERS === '1') {
    test('rsyslog is installed (FLOWSENTRY_REQUIRE_PEERS=1)', () => expect(missing, reason).toEqual([]));
  } else {
    test.skip(`SIEM forwarding to rsyslog: ${reason}`, () => {});
  }
} else {
  describe(`SIEM forwarding to a real rsyslog ${rsyslogVersion()}`, () => {
    let h: DetectionHarness;
    let ca: TestCa;
    let rsyslog: Rsyslog;
    let forwarder: SiemForwarder;
    let store: FindingStore;
    const forwarded: Finding[] = [];
    const notForwarded: Finding[] = [];
    const ports = { udp: 0, tcp: 0, lf: 0, tls: 0, mtls: 0 };

    const byId = (list: readonly Finding[]) => new Map(list.map((f) => [f.id, f]));
    const ids = (list: readonly Finding[]) => [...new Set(list.map((f) => f.id))].sort();

    beforeAll(async () => {
      h = await DetectionHarness.open();
      ca = makeTestCa(h.dir.path);
      ports.udp = await freeUdpPort();
      ports.tcp = await freeTcpPort();
      ports.lf = await freeTcpPort();
      ports.tls = await freeTcpPort();
      ports.mtls = await freeTcpPort();
      rsyslog = new Rsyslog(
        h.dir.path,
        [
          { name: 'udp', kind: 'udp', port: ports.udp },
          { name: 'tcp', kind: 'tcp', port: ports.tcp },
          { name: 'lf', kind: 'tcp', port: ports.lf },
          { name: 'tls', kind: 'tls', port: ports.tls, authMode: 'anon' },
          { name: 'mtls', kind: 'tls', port: ports.mtls, authMode: 'x509/certvalid' },
        ],
        { caFile: ca.caFile, certFile: ca.serverCert, keyFile: ca.serverKey },
      );
      rsyslog.validate();
      await rsyslog.start();

      store = new FindingStore(h.store);
      const now = Date.now() - 10 * 60_000;
      const severities = ['low', 'medium', 'high', 'critical'] as const;
      // Twelve findings: every severity, two technique families, one IPv6 pair, hostile text.
      for (let i = 0; i < 12; i++) {
        const v6 = i === 5;
        const src = v6 ? '2001:db8::66' : `198.51.100.${i + 1}`;
        const dst = v6 ? 'fd00::20' : '10.1.1.10';
        await store.record(
          TEST_DETECTOR,
          [
            scanUpdate(src, dst, now + i * 1000, {
              severity: severities[i % 4]!,
              techniqueIds: i % 3 === 0 ? ['T1110.001'] : ['T1046'],
              tacticIds: i % 3 === 0 ? ['TA0006'] : ['TA0007'],
              title: i === 7 ? `Scan ${HOSTILE}` : `Port scan of ${dst} by ${src}`,
              relatedIps: [`10.1.1.${20 + i}`],
              evidence: i === 7 ? { note: HOSTILE } : { distinct_ports: 40 + i },
            }),
          ],
          testRun(`r${i}`),
        );
      }
      // A backfill that asked not to forward.
      await store.record(
        TEST_DETECTOR,
        [scanUpdate('203.0.113.9', '10.1.1.10', now)],
        testRun('quiet', false),
      );
      const all = await h.findings();
      forwarded.push(...all.filter((f) => f.forward));
      notForwarded.push(...all.filter((f) => !f.forward));

      const config = configSchema.parse({
        dataDir: h.dir.path,
        api: { publicUrl: 'https://fs.example' },
        siem: {
          hostname: 'fs-test',
          pollIntervalMs: 200,
          destinations: [
            { name: 'udp', url: `udp://127.0.0.1:${ports.udp}`, format: 'rfc5424' },
            { name: 'tcp', url: `tcp://127.0.0.1:${ports.tcp}`, format: 'json', updateIntervalSeconds: 3 },
            {
              name: 'lf',
              url: `tcp://127.0.0.1:${ports.lf}`,
              format: 'cef',
              framing: 'lf',
              header: 'rfc3164',
            },
            {
              name: 'tls',
              url: `tls://127.0.0.1:${ports.tls}`,
              format: 'leef',
              tls: { caFile: ca.caFile, serverName: 'siem.test' },
              filter: { minSeverity: 'high' },
            },
            {
              name: 'mtls',
              url: `tls://127.0.0.1:${ports.mtls}`,
              format: 'json-ecs',
              tls: { caFile: ca.caFile, certFile: ca.clientCert, keyFile: ca.clientKey },
              filter: { techniques: ['T1110'], detectors: ['vertical-port-scan'] },
            },
            // The server's certificate does not carry this name: nothing may be sent.
            {
              name: 'wrong-name',
              url: `tls://127.0.0.1:${ports.tls}`,
              format: 'cef',
              tls: { caFile: ca.caFile, serverName: 'other.test' },
            },
            // Nor to a server whose chain the CA file does not vouch for.
            {
              name: 'wrong-ca',
              url: `tls://127.0.0.1:${ports.tls}`,
              format: 'cef',
              tls: { caFile: ca.otherCaFile },
            },
          ],
          retry: { minMs: 100, maxMs: 1000 },
        },
      });
      forwarder = createSiemForwarder(config, {
        store: h.store,
        log: silentLogger(),
        version: '9.9.9',
        detectors: new Map([['vertical-port-scan', { title: 'Vertical port scan' }]]),
      });
      await forwarder.start();
    });

    afterAll(async () => {
      await forwarder?.stop();
      await rsyslog?.stop();
      await h?.close();
    });

    const all = (input: string, expected: readonly Finding[]) =>
      rsyslog.waitFor(
        input,
        (got) => new Set(got.map(idOf(input))).size >= expected.length,
        30_000,
        `${expected.length} findings`,
      );

    function idOf(input: string): (r: Received) => string {
      if (input === 'udp') return (r) => r.sdFindingId;
      if (input === 'tcp' || input === 'mtls') return (r) => r.jsonEventId;
      if (input === 'lf') return (r) => parseCef(r.msg.trimStart()).extension.externalId!;
      return (r) => parseLeef(r.msg.trimStart()).attributes.findingId!;
    }

    test('the test data: 12 findings to forward, 1 made by a backfill with forward=false', () => {
      expect(forwarded).toHaveLength(12);
      expect(notForwarded).toHaveLength(1);
    });

    test('UDP, RFC 5424 structured data, parsed by mmpstrucdata', async () => {
      const got = await all('udp', forwarded);
      expect(ids(got.map((r) => ({ id: r.sdFindingId }) as Finding))).toEqual(ids(forwarded));
      const want = byId(forwarded);
      for (const r of got) {
        const f = want.get(r.sdFindingId)!;
        expect(r).toMatchObject({ hostname: 'fs-test', app: 'flowsentry', msgid: 'finding' });
        const sd = r.parsed['rfc5424-sd']!['flowsentry@32473']!;
        expect(sd).toMatchObject({
          id: f.id,
          version: String(f.version),
          action: 'created',
          detector: 'vertical-port-scan',
          severity: f.severity,
          techniques: f.technique_ids.join(','),
          tactics: f.tactic_ids.join(','),
          src_ip: f.src_ip,
          dst_ip: f.dst_ip,
          related_ips: f.related_ips.join(','),
          first_seen: f.first_seen,
          last_seen: f.last_seen,
          link: `https://fs.example/api/v1/findings/${f.id}`,
        });
        // rsyslog unescaped the PARAM-VALUE: the evidence is the finding's, as JSON.
        expect(sd.evidence).toBe(
          JSON.stringify(f.evidence).replace('\\u0000', '\uFFFD').replace('\u0085', '\\u0085'),
        );
        // Syslog has no escape for control characters: they arrive as spaces.
        expect(r.msg).toBe(spaced(f.title, ['\t', '\n', '\r', '\u0000', '\u0085']));
        const severity = { low: 5, medium: 4, high: 3, critical: 2 }[f.severity];
        expect(Number(r.pri)).toBe(16 * 8 + severity);
      }
    });

    test('TCP with octet counting, ECS JSON parsed by mmjsonparse', async () => {
      const got = await all('tcp', forwarded);
      const want = byId(forwarded);
      expect([...new Set(got.map((r) => r.jsonEventId))].sort()).toEqual(ids(forwarded));
      for (const r of got) {
        const f = want.get(r.jsonEventId)!;
        const doc = r.parsed as Record<string, Record<string, unknown>>;
        expect(doc).toMatchObject({
          '@timestamp': f.updated_at,
          // NUL is sent as U+FFFD: json-c (mmjsonparse) would end the string there.
          message: f.title.replace('\u0000', '\uFFFD'),
          event: {
            kind: 'alert',
            id: f.id,
            start: f.first_seen,
            end: f.last_seen,
            url: expect.stringContaining(f.id),
          },
          rule: { id: 'vertical-port-scan', name: 'Vertical port scan' },
          threat: { framework: 'MITRE ATT&CK', tactic: { id: f.tactic_ids } },
          source: { ip: f.src_ip },
          destination: { ip: f.dst_ip },
          observer: { version: '9.9.9', hostname: 'fs-test' },
          flowsentry: {
            finding: { version: f.version, technique_ids: f.technique_ids, severity: f.severity },
          },
        });
        const technique = (doc.threat as { technique: { id: string[]; subtechnique?: { id: string[] } } })
          .technique;
        if (f.technique_ids[0] === 'T1110.001') {
          expect(technique).toMatchObject({
            id: ['T1110'],
            name: ['Brute Force'],
            subtechnique: { id: ['T1110.001'], name: ['Password Guessing'] },
          });
        } else {
          expect(technique).toMatchObject({ id: ['T1046'], name: ['Network Service Discovery'] });
        }
      }
    });

    test('TCP with LF framing, RFC 3164 header, CEF', async () => {
      const got = await all('lf', forwarded);
      const want = byId(forwarded);
      for (const r of got) {
        // The whole line, as framed, is one RFC 3164 message.
        const bsd = parseRfc3164(r.raw);
        expect(bsd).toMatchObject({ hostname: 'fs-test', tag: 'flowsentry' });
        const cef = parseCef(bsd.msg);
        const f = want.get(cef.extension.externalId!)!;
        expect(cef).toMatchObject({
          version: '0',
          vendor: 'flowsentry',
          product: 'flowsentry',
          deviceVersion: '9.9.9',
          signatureId: 'vertical-port-scan',
          name: 'Vertical port scan',
          severity: String({ low: 3, medium: 5, high: 8, critical: 10 }[f.severity]),
        });
        expect(cef.extension).toMatchObject({
          start: String(Date.parse(f.first_seen)),
          end: String(Date.parse(f.last_seen)),
          cs1Label: 'mitreTactic',
          cs1: f.tactic_ids.join(','),
          cs2Label: 'mitreTechnique',
          cs2: f.technique_ids.join(','),
          cs3: `https://fs.example/api/v1/findings/${f.id}`,
          cn1: String(f.version),
        });
        if (f.src_ip!.includes(':')) expect(cef.extension).toMatchObject({ c6a2: f.src_ip, c6a3: f.dst_ip });
        else expect(cef.extension).toMatchObject({ src: f.src_ip, dst: f.dst_ip });
        // CEF carries line breaks escaped: the hostile title comes back with them.
        expect(cef.extension.msg).toBe(spaced(f.title, ['\t', '\u0000', '\u0085']));
      }
    });

    test('TLS (server certificate checked against the CA and the name), LEEF, minimum severity high', async () => {
      const expected = forwarded.filter((f) => f.severity === 'high' || f.severity === 'critical');
      expect(expected).toHaveLength(6);
      const got = await all('tls', expected);
      const want = byId(expected);
      for (const r of got) {
        const leef = parseLeef(r.msg.trimStart());
        const f = want.get(leef.attributes.findingId!)!;
        expect(f).toBeDefined();
        expect(leef).toMatchObject({
          version: '2.0',
          vendor: 'flowsentry',
          eventId: 'vertical-port-scan',
          delimiter: '\t',
        });
        expect(leef.attributes).toMatchObject({
          sev: String({ high: 8, critical: 10 }[f.severity as 'high']),
          src: f.src_ip,
          dst: f.dst_ip,
          mitreTechnique: f.technique_ids.join(','),
          devTimeFormat: 'MMM dd yyyy HH:mm:ss.SSS z',
          firstSeen: f.first_seen,
          lastSeen: f.last_seen,
        });
      }
    });

    test('mutual TLS with a client certificate; technique filter T1110 takes T1110.001', async () => {
      const expected = forwarded.filter((f) => f.technique_ids.some((t) => t.startsWith('T1110')));
      expect(expected).toHaveLength(4);
      const got = await all('mtls', expected);
      expect([...new Set(got.map((r) => r.jsonEventId))].sort()).toEqual(ids(expected));
    });

    test('a wrong server name or an untrusted chain sends nothing', async () => {
      const status = await waitFor(
        async () => {
          const s = forwarder.status();
          const bad = s.filter((d) => d.name.startsWith('wrong-'));
          return bad.every((d) => d.connectionFailures >= 2) ? bad : undefined;
        },
        20_000,
        'failed TLS handshakes',
      );
      for (const d of status) {
        expect(d).toMatchObject({ sent: 0, connected: false });
        expect(d.queued).toBe(12);
      }
      expect(status.find((d) => d.name === 'wrong-name')!.lastError).toMatch(/other\.test|altnames/i);
      expect(status.find((d) => d.name === 'wrong-ca')!.lastError).toMatch(/certificate/i);
    });

    test('the finding made with forward=false reached no destination', () => {
      const quiet = notForwarded[0]!.id;
      for (const input of ['udp', 'tcp', 'lf', 'tls', 'mtls']) {
        expect(
          rsyslog
            .received(input)
            .map((r) => r.raw)
            .filter((raw) => raw.includes(quiet)),
        ).toEqual([]);
      }
    });

    test('an analyst status change goes out at once as an update of the same id', async () => {
      const target = forwarded[2]!;
      const updated = (await store.setStatus(target.id, 'resolved', 'analyst', 'benign'))!;
      const got = await rsyslog.waitFor(
        'udp',
        (rs) =>
          rs.some((r) => r.parsed['rfc5424-sd']?.['flowsentry@32473']?.version === String(updated.version)),
        15_000,
        'the status update',
      );
      const messages = got.filter((r) => r.sdFindingId === target.id);
      expect(messages.map((r) => r.parsed['rfc5424-sd']!['flowsentry@32473']!.status)).toEqual([
        'open',
        'resolved',
      ]);
      expect(messages.at(-1)!.parsed['rfc5424-sd']!['flowsentry@32473']!.action).toBe('updated');
    });

    test('a flood of updates of one finding is throttled; the latest state wins', async () => {
      const target = forwarded[1]!;
      const base = Date.parse(target.first_seen);
      for (let n = 1; n <= 6; n++) {
        await store.record(
          TEST_DETECTOR,
          [
            scanUpdate(target.src_ip!, target.dst_ip!, base + n * 10_000, {
              severity: target.severity,
              techniqueIds: target.technique_ids as string[],
              tacticIds: target.tactic_ids as string[],
            }),
          ],
          testRun(`flood-${n}`),
        );
      }
      const latest = (await h.findings()).find((f) => f.id === target.id)!;
      // "tcp" allows one update per finding per 3 s: the flood arrives there as one message, the latest.
      const got = await rsyslog.waitFor(
        'tcp',
        (rs) => rs.some((r) => r.jsonEventId === target.id && jsonVersion(r) === latest.version),
        20_000,
        'the latest update',
      );
      const versions = got.filter((r) => r.jsonEventId === target.id).map(jsonVersion);
      // Six updates within the interval: at most one goes out at once, then the latest when it ends.
      expect(versions[0]).toBe(target.version);
      expect(versions.at(-1)).toBe(latest.version);
      expect(versions.length).toBeLessThanOrEqual(3);
      expect(got.filter((r) => r.jsonEventId === target.id).at(-1)!.parsed).toMatchObject({
        event: { end: latest.last_seen, action: 'finding-updated' },
      });
      // "udp" (300 s) has sent nothing of the flood yet: its update waits.
      const udp = rsyslog.received('udp').filter((r) => r.sdFindingId === target.id);
      expect(udp).toHaveLength(1);
      const status = forwarder.status().find((d) => d.name === 'udp')!;
      expect(status.queued).toBeGreaterThanOrEqual(1);
      expect(status.oldestUnsentAgeSeconds).toBeGreaterThan(0);
    });

    test('status per destination', () => {
      const s = Object.fromEntries(forwarder.status().map((d) => [d.name, d]));
      expect(s.udp).toMatchObject({
        transport: 'udp',
        format: 'rfc5424',
        framing: 'datagram',
        failed: 0,
        dropped: 0,
      });
      expect(s.tcp).toMatchObject({ connected: true, framing: 'octet-counting', format: 'json', dropped: 0 });
      expect(s.lf).toMatchObject({ connected: true, framing: 'lf', header: 'rfc3164', format: 'cef' });
      expect(s.tls!.skipped).toBeGreaterThanOrEqual(6 + 1);
      expect(s.mtls).toMatchObject({ connected: true, format: 'json' });
      expect(s.tcp!.sent).toBeGreaterThanOrEqual(13);
    });
  });
}
