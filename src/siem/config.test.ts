import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { sampleFinding } from '../../test/support/siem-findings.js';
import { tempDir } from '../../test/support/temp.js';
import { loadConfig } from '../config/index.js';
import { findingFilter, resolveDestinations } from './destinations.js';

const scratch = tempDir();
afterAll(() => scratch.remove());

function file(name: string, text: string): string {
  const path = join(scratch.path, name);
  writeFileSync(path, text);
  return path;
}

function errorOf(env: Record<string, string>): string {
  try {
    const { config } = loadConfig(env);
    resolveDestinations(config, { version: '0', detectors: new Set(['vertical-port-scan']) });
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected the configuration to be rejected');
}

const PEM = file('ca.pem', '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');

describe('SIEM configuration', () => {
  test('FLOWSENTRY_SYSLOG_URL and FLOWSENTRY_SYSLOG_FORMAT make one destination, "default"', () => {
    const { config } = loadConfig({
      FLOWSENTRY_SYSLOG_URL: 'tls://siem.example:6514',
      FLOWSENTRY_SYSLOG_FORMAT: 'cef',
      FLOWSENTRY_SYSLOG_CA_FILE: PEM,
      FLOWSENTRY_LISTEN_HTTP: '0.0.0.0:9000',
    });
    const [d, ...rest] = resolveDestinations(config, { version: '1.2.3' });
    expect(rest).toEqual([]);
    expect(d).toMatchObject({
      name: 'default',
      transport: 'tls',
      format: 'cef',
      framing: 'octet-counting',
      header: 'rfc5424',
      maxMessageBytes: 8192,
      updateIntervalMs: 300_000,
      transportOptions: { host: 'siem.example', port: 6514, tls: { verifyServerName: true } },
    });
    expect(d!.transportOptions.tls!.ca!.toString()).toContain('BEGIN CERTIFICATE');
    expect(d!.render.context.sdId).toBe('flowsentry@32473');
    // The link base follows the API address unless FLOWSENTRY_PUBLIC_URL says otherwise.
    expect(config.api.publicUrl).toBe('http://0.0.0.0:9000');
    expect(loadConfig({ FLOWSENTRY_PUBLIC_URL: 'https://fs.example/x/' }).config.api.publicUrl).toBe(
      'https://fs.example/x',
    );
  });

  test('no URL, no destination', () => {
    expect(resolveDestinations(loadConfig({}).config, { version: '0' })).toEqual([]);
  });

  test('json-ecs stays accepted, as json', () => {
    const { config } = loadConfig({
      FLOWSENTRY_SYSLOG_URL: 'udp://[::1]:514',
      FLOWSENTRY_SYSLOG_FORMAT: 'json-ecs',
    });
    expect(config.siem.format).toBe('json-ecs');
    expect(resolveDestinations(config, { version: '0' })[0]).toMatchObject({
      format: 'json',
      transport: 'udp',
      framing: 'datagram',
      maxMessageBytes: 2048,
      transportOptions: { host: '::1', port: 514 },
    });
  });

  test('the file lists more destinations, each with its own options', () => {
    const yaml = file(
      'siem.yaml',
      [
        'siem:',
        '  enterpriseNumber: "99999"',
        '  destinations:',
        '    - name: qradar',
        '      url: tcp://qradar.example:514',
        '      format: leef',
        '      framing: lf',
        '      header: rfc3164',
        '      facility: auth',
        '      maxMessageBytes: 4096',
        '      filter: { minSeverity: high, techniques: [T1110] }',
        '    - name: elastic',
        '      url: tls://10.0.0.9:6514',
        '      format: json',
        '      updateIntervalSeconds: 60',
        `      tls: { caFile: ${PEM}, serverName: logs.example, verifyServerName: false }`,
        '      filter: { detectors: [vertical-port-scan] }',
      ].join('\n'),
    );
    const { config } = loadConfig({
      FLOWSENTRY_CONFIG: yaml,
      FLOWSENTRY_SYSLOG_URL: 'udp://127.0.0.1:514',
    });
    const ds = resolveDestinations(config, { version: '0', detectors: new Set(['vertical-port-scan']) });
    expect(ds.map((d) => [d.name, d.transport, d.format, d.framing, d.header, d.maxMessageBytes])).toEqual([
      ['default', 'udp', 'rfc5424', 'datagram', 'rfc5424', 2048],
      ['qradar', 'tcp', 'leef', 'lf', 'rfc3164', 4096],
      ['elastic', 'tls', 'json', 'octet-counting', 'rfc5424', 8192],
    ]);
    expect(ds[1]!.render.header.facility).toBe(4);
    expect(ds[2]!.updateIntervalMs).toBe(60_000);
    expect(ds[2]!.transportOptions.tls).toMatchObject({
      serverName: 'logs.example',
      verifyServerName: false,
    });
    expect(ds[0]!.render.context.sdId).toBe('flowsentry@99999');
  });

  test.each([
    [
      { FLOWSENTRY_SYSLOG_URL: 'syslog.example:514' },
      /FLOWSENTRY_SYSLOG_URL \(siem\.syslogUrl\): expected udp/,
    ],
    [{ FLOWSENTRY_SYSLOG_URL: 'tcp://siem:0' }, /FLOWSENTRY_SYSLOG_URL \(siem\.syslogUrl\)/],
    [{ FLOWSENTRY_SYSLOG_URL: 'http://siem:80' }, /FLOWSENTRY_SYSLOG_URL \(siem\.syslogUrl\)/],
    [{ FLOWSENTRY_SYSLOG_FORMAT: 'xml' }, /FLOWSENTRY_SYSLOG_FORMAT \(siem\.format\)/],
    [{ FLOWSENTRY_SYSLOG_FRAMING: 'nul' }, /FLOWSENTRY_SYSLOG_FRAMING \(siem\.framing\)/],
    [
      { FLOWSENTRY_SYSLOG_URL: 'udp://siem:514', FLOWSENTRY_SYSLOG_FRAMING: 'lf' },
      /FLOWSENTRY_SYSLOG_FRAMING \(siem\.framing\): framing applies to tcp/,
    ],
    [
      { FLOWSENTRY_SYSLOG_URL: 'tls://siem:6514', FLOWSENTRY_SYSLOG_CA_FILE: '/nonexistent/ca.pem' },
      /FLOWSENTRY_SYSLOG_CA_FILE \(siem\.tls\.caFile\): cannot read this file/,
    ],
    [
      { FLOWSENTRY_SYSLOG_URL: 'tcp://siem:514', FLOWSENTRY_SYSLOG_CA_FILE: PEM },
      /siem\.tls: TLS settings need a tls:\/\/ syslogUrl/,
    ],
    [
      { FLOWSENTRY_SYSLOG_URL: 'tls://siem:6514', FLOWSENTRY_SYSLOG_CERT_FILE: PEM },
      /siem\.tls: certFile and keyFile go together/,
    ],
    [{ FLOWSENTRY_PUBLIC_URL: 'fs.example' }, /FLOWSENTRY_PUBLIC_URL \(api\.publicUrl\): expected http/],
  ])('%o is rejected with a message naming the field', (env, pattern) => {
    expect(errorOf(env as Record<string, string>)).toMatch(pattern);
  });

  test.each([
    [
      '    - { name: a, url: tcp://x:1, format: cef }\n    - { name: a, url: tcp://y:1 }\n',
      /destinations\[1\]\.name in .*: another destination is named "a"/,
    ],
    [
      '    - { name: a, url: tcp://x:1, format: rfc5424, header: rfc3164 }\n',
      /destinations\[0\]\.format in .*: format rfc5424 carries/,
    ],
    ['    - { name: a, url: tcp://x:1, maxMessageBytes: 100 }\n', /destinations\[0\]\.maxMessageBytes/],
    [
      '    - { name: a, url: tcp://x:1, filter: { techniques: [T11] } }\n',
      /destinations\[0\]\.filter\.techniques\[0\] in .*: expected an ATT&CK/,
    ],
    [
      '    - { name: a, url: tcp://x:1, filter: { detectors: [no-such-detector] } }\n',
      /siem\.destinations\[0\]\.filter\.detectors\[0\]: no detector "no-such-detector"/,
    ],
    ['    - { name: A!, url: tcp://x:1 }\n', /destinations\[0\]\.name/],
    [
      '    - { name: a, url: tls://x:1, tls: { keyFile: /nope } }\n',
      /destinations\[0\]\.tls\.keyFile.*cannot read this file/,
    ],
  ])('a bad destination in the file stops start-up naming it: %#', (entry, pattern) => {
    const yaml = file(`bad-${Math.random().toString(36).slice(2)}.yaml`, `siem:\n  destinations:\n${entry}`);
    expect(errorOf({ FLOWSENTRY_CONFIG: yaml })).toMatch(pattern);
  });
});

describe('destination filter', () => {
  test('minimum severity', () => {
    const accepts = findingFilter({ minSeverity: 'high', detectors: [], techniques: [] });
    expect(accepts(sampleFinding({ severity: 'medium' }))).toBe(false);
    expect(accepts(sampleFinding({ severity: 'high' }))).toBe(true);
    expect(accepts(sampleFinding({ severity: 'critical' }))).toBe(true);
  });

  test('detectors', () => {
    const accepts = findingFilter({ minSeverity: 'low', detectors: ['ssh-brute-force'], techniques: [] });
    expect(accepts(sampleFinding({ detector: 'vertical-port-scan' }))).toBe(false);
    expect(accepts(sampleFinding({ detector: 'ssh-brute-force' }))).toBe(true);
  });

  test('techniques match by prefix: T1110 takes T1110.001, not T1046', () => {
    const accepts = findingFilter({ minSeverity: 'low', detectors: [], techniques: ['T1110'] });
    expect(accepts(sampleFinding({ technique_ids: ['T1110.001'] }))).toBe(true);
    expect(accepts(sampleFinding({ technique_ids: ['T1110'] }))).toBe(true);
    expect(accepts(sampleFinding({ technique_ids: ['T1046'] }))).toBe(false);
    const sub = findingFilter({ minSeverity: 'low', detectors: [], techniques: ['T1110.003'] });
    expect(sub(sampleFinding({ technique_ids: ['T1110.001'] }))).toBe(false);
    expect(sub(sampleFinding({ technique_ids: ['T1046', 'T1110.003'] }))).toBe(true);
  });
});
