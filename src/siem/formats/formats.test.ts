import { describe, expect, test } from 'vitest';
import { HOSTILE, sampleFinding } from '../../../test/support/siem-findings.js';
import {
  type CefEvent,
  type LeefEvent,
  parseCef,
  parseLeef,
  parseRfc3164,
  parseRfc5424,
} from '../../../test/support/siem-parsers.js';
import type { Finding } from '../../findings/model.js';
import { frame, type HeaderSpec, renderMessage } from '../message.js';
import { cefHeader, cefValue } from './cef.js';
import { FORMATS, type FormatName, viewOf } from './index.js';
import { leefHeader, leefTime, leefValue } from './leef.js';
import { sdValue } from './rfc5424.js';
import { cut, oneLine } from './text.js';

const HEADER: HeaderSpec = { header: 'rfc5424', facility: 16, hostname: 'fs1', appName: 'flowsentry' };
const CONTEXT = { version: '0.1.0', hostname: 'fs1', sdId: 'flowsentry@32473' };
const VIEW = { linkBase: 'https://fs.example/api/v1/findings/', detectorTitle: () => 'Vertical port scan' };

function render(f: Finding, format: FormatName, maxBytes = 65_536, header: HeaderSpec = HEADER) {
  return renderMessage(viewOf(f, VIEW), { format: FORMATS[format], header, context: CONTEXT, maxBytes });
}

/** What every format must carry, read back by the independent parser of that format. */
interface Carried {
  id: string;
  version: string;
  detector: string;
  severity: string;
  techniques: string;
  src: string;
  dst: string;
  first: string;
  last: string;
  link: string;
  title: string;
}

function carried(format: FormatName, message: string): Carried {
  const syslog = parseRfc5424(message);
  if (format === 'rfc5424') {
    const p = syslog.sd['flowsentry@32473']!;
    return {
      id: p.id!,
      version: p.version!,
      detector: p.detector!,
      severity: p.severity!,
      techniques: p.techniques!,
      src: p.src_ip!,
      dst: p.dst_ip!,
      first: p.first_seen!,
      last: p.last_seen!,
      link: p.link!,
      title: syslog.msg,
    };
  }
  if (format === 'cef') {
    const e: CefEvent = parseCef(syslog.msg);
    const x = e.extension;
    return {
      id: x.externalId!,
      version: x.cn1!,
      detector: e.signatureId,
      severity: e.severity,
      techniques: x.cs2!,
      src: x.src ?? x.c6a2!,
      dst: x.dst ?? x.c6a3!,
      first: new Date(Number(x.start)).toISOString(),
      last: new Date(Number(x.end)).toISOString(),
      link: x.cs3!,
      title: x.msg!,
    };
  }
  if (format === 'leef') {
    const e: LeefEvent = parseLeef(syslog.msg);
    const a = e.attributes;
    return {
      id: a.findingId!,
      version: a.findingVersion!,
      detector: e.eventId,
      severity: a.sev!,
      techniques: a.mitreTechnique!,
      src: a.src!,
      dst: a.dst!,
      first: a.firstSeen!,
      last: a.lastSeen!,
      link: a.findingUrl!,
      title: a.title!,
    };
  }
  const doc = JSON.parse(syslog.msg);
  return {
    id: doc.event.id,
    version: String(doc.flowsentry.finding.version),
    detector: doc.rule.id,
    severity: String(doc.event.severity),
    techniques: doc.flowsentry.finding.technique_ids.join(','),
    src: doc.source.ip,
    dst: doc.destination.ip,
    first: doc.event.start,
    last: doc.event.end,
    link: doc.event.url,
    title: doc.message,
  };
}

const SEVERITY_IN: Record<FormatName, string> = { rfc5424: 'high', cef: '8', leef: '8', json: '3' };

describe('escaping', () => {
  test('RFC 5424 PARAM-VALUE escapes ", \\ and ], and control characters become spaces', () => {
    expect(sdValue(HOSTILE)).toBe('a|b=c\\\\d\\"e\\]f[g h i j k l é 日本 🛰️ end');
  });

  test('CEF header escapes | and \\; extension escapes = and \\ and writes line breaks as \\n, \\r', () => {
    expect(cefHeader(HOSTILE)).toBe('a\\|b=c\\\\d"e]f[g h i j k l é 日本 🛰️ end');
    expect(cefValue(HOSTILE)).toBe('a|b\\=c\\\\d"e]f[g\\nh\\ri j k l é 日本 🛰️ end');
  });

  test('LEEF values cannot hold the tab delimiter; header fields keep a safe alphabet', () => {
    expect(leefValue(HOSTILE)).toBe('a|b=c\\d"e]f[g h i j k l é 日本 🛰️ end');
    expect(leefValue(HOSTILE)).not.toContain('\t');
    expect(leefHeader('vertical-port-scan')).toBe('vertical-port-scan');
    expect(leefHeader('a|b\\c')).toBe('abc');
    expect(leefTime('2026-01-02T03:04:05.006Z')).toBe('Jan 02 2026 03:04:05.006 GMT');
  });

  test('helpers: control characters, cutting without splitting a surrogate pair', () => {
    expect(oneLine('a\u0000b\u007fc\u009fd')).toBe('a b c d');
    expect(cut('abcdef', 10)).toBe('abcdef');
    expect(cut('abcdef', 4)).toBe('abc…');
    expect(cut('ab🛰️', 4)).toBe('ab…');
  });
});

describe.each(['rfc5424', 'cef', 'leef', 'json'] as const)('format %s', (format) => {
  const hostile = sampleFinding({
    title: `Scan ${HOSTILE}`,
    evidence: { note: HOSTILE, nested: { '|=\\': ['"]', '\n'] } },
  });

  test('hostile values come back unchanged where the format can carry them', () => {
    const { message, truncated } = render(hostile, format);
    expect(truncated).toBe(false);
    // Nothing that would split the message under LF framing (LEEF's tabs are its delimiter).
    expect(message).not.toMatch(format === 'leef' ? /[\n\r]/ : /[\n\r\t]/);
    const c = carried(format, message);
    expect(c).toMatchObject({
      id: hostile.id,
      version: String(hostile.version),
      detector: 'vertical-port-scan',
      severity: SEVERITY_IN[format],
      techniques: 'T1046,T1110.001',
      src: '198.51.100.66',
      dst: '10.1.1.10',
      first: hostile.first_seen,
      last: hostile.last_seen,
      link: `https://fs.example/api/v1/findings/${hostile.id}`,
    });
    // JSON and CEF extensions carry line breaks escaped; the others turn control characters into spaces.
    const expectedTitle =
      format === 'json'
        ? `Scan ${HOSTILE}`.replace('\u0000', '\uFFFD')
        : format === 'cef'
          ? `Scan ${HOSTILE}`.replaceAll('\t', ' ').replaceAll('\u0000', ' ').replaceAll('\u0085', ' ')
          : `Scan ${oneLine(HOSTILE)}`;
    expect(c.title).toBe(expectedTitle);
  });

  test('the evidence arrives as the JSON text of the evidence', () => {
    const { message } = render(hostile, format);
    const syslog = parseRfc5424(message);
    const text =
      format === 'rfc5424'
        ? syslog.sd['flowsentry@32473']!.evidence!
        : format === 'cef'
          ? parseCef(syslog.msg).extension.cs5!
          : format === 'leef'
            ? parseLeef(syslog.msg).attributes.evidence!
            : JSON.parse(syslog.msg).flowsentry.finding.evidence;
    // JSON escapes every control character in it (C1 too), so no format has to replace any.
    // NUL becomes U+FFFD (C receivers would cut the string there).
    expect(text).toBe(
      JSON.stringify(hostile.evidence).replace('\\u0000', '\uFFFD').replace('\u0085', '\\u0085'),
    );
    expect(JSON.parse(text)).toEqual({ ...hostile.evidence, note: HOSTILE.replace('\u0000', '\uFFFD') });
  });

  test('IPv6 entities', () => {
    const { message } = render(sampleFinding({ src_ip: '2001:db8::1', dst_ip: 'fd00::20' }), format);
    expect(carried(format, message)).toMatchObject({ src: '2001:db8::1', dst: 'fd00::20' });
  });

  test.each([2048, 4096, 8192])('very long values are cut to %i bytes and the message stays valid', (max) => {
    const huge = sampleFinding({
      title: `Scan ${'é|=\\"]日'.repeat(3_000)}`,
      evidence: {
        blob: `${HOSTILE}${'x'.repeat(200_000)}`,
        list: Array.from({ length: 5_000 }, (_, i) => i),
      },
      related_ips: Array.from(
        { length: 50 },
        (_, i) => `2001:db8:ffff:ffff:ffff:ffff:ffff:${i.toString(16)}`,
      ),
      exporters: Array.from({ length: 16 }, (_, i) => `192.0.2.${i}`),
    });
    const rendered = render(huge, format, max);
    expect(rendered.truncated).toBe(true);
    expect(rendered.oversize).toBe(false);
    expect(Buffer.byteLength(rendered.message)).toBeLessThanOrEqual(max);
    // Parses, and every required field is intact.
    const c = carried(format, rendered.message);
    expect(c).toMatchObject({
      id: huge.id,
      version: String(huge.version),
      detector: huge.detector,
      techniques: 'T1046,T1110.001',
      src: huge.src_ip,
      dst: huge.dst_ip,
      first: huge.first_seen,
      last: huge.last_seen,
      link: `https://fs.example/api/v1/findings/${huge.id}`,
    });
    expect(c.title.startsWith('Scan ')).toBe(true);
    // Cut at character boundaries: no lone surrogate, so the UTF-8 round trip is exact.
    expect(Buffer.from(rendered.message, 'utf8').toString('utf8')).toBe(rendered.message);
  });

  test('a message that fits is not touched', () => {
    const f = sampleFinding();
    const full = render(f, format).message;
    const exact = render(f, format, Buffer.byteLength(full));
    expect(exact).toEqual({ message: full, truncated: false, oversize: false });
    const oneLess = render(f, format, Buffer.byteLength(full) - 1);
    expect(oneLess.truncated).toBe(true);
    expect(Buffer.byteLength(oneLess.message)).toBeLessThan(Buffer.byteLength(full));
  });
});

describe('syslog header and framing', () => {
  test('RFC 5424 header: PRI from facility and severity, UTC time with milliseconds, nil PROCID', () => {
    const { message } = render(sampleFinding({ severity: 'critical' }), 'cef');
    const m = parseRfc5424(message);
    expect(m).toMatchObject({
      pri: 16 * 8 + 2,
      timestamp: '2026-01-02T03:16:00.000Z',
      hostname: 'fs1',
      appName: 'flowsentry',
      procId: '-',
      msgId: 'finding',
      sd: {},
    });
    expect(
      m.msg.startsWith('CEF:0|flowsentry|flowsentry|0.1.0|vertical-port-scan|Vertical port scan|10|'),
    ).toBe(true);
  });

  test('syslog severities: low notice, medium warning, high error, critical critical', () => {
    const pri = (severity: Finding['severity']) =>
      parseRfc5424(render(sampleFinding({ severity }), 'json').message).pri;
    expect([pri('low'), pri('medium'), pri('high'), pri('critical')]).toEqual([133, 132, 131, 130]);
  });

  test('RFC 3164 header: Mmm, space-padded day, no year or zone (UTC)', () => {
    const header: HeaderSpec = { ...HEADER, header: 'rfc3164', facility: 4 };
    const { message } = render(sampleFinding(), 'leef', 65_536, header);
    const m = parseRfc3164(message);
    expect(m).toMatchObject({ pri: 35, timestamp: 'Jan  2 03:16:00', hostname: 'fs1', tag: 'flowsentry' });
    expect(parseLeef(m.msg).attributes.findingId).toBe(sampleFinding().id);
  });

  test('octet counting counts bytes, not characters; LF framing appends one line feed', () => {
    expect(frame('<13>1 - - - - - - é日', 'octet-counting').toString()).toBe('23 <13>1 - - - - - - é日');
    expect(frame('abc', 'lf').toString()).toBe('abc\n');
    expect(frame('abc', 'datagram').toString()).toBe('abc');
  });

  test('ECS fields', () => {
    const doc = JSON.parse(parseRfc5424(render(sampleFinding(), 'json').message).msg);
    expect(doc).toMatchObject({
      '@timestamp': '2026-01-02T03:16:00.000Z',
      event: {
        kind: 'alert',
        category: ['network', 'intrusion_detection'],
        action: 'finding-updated',
        severity: 3,
        risk_score: 73,
        start: '2026-01-02T03:04:05.006Z',
        end: '2026-01-02T03:14:05.006Z',
      },
      rule: { id: 'vertical-port-scan', name: 'Vertical port scan' },
      threat: {
        framework: 'MITRE ATT&CK',
        tactic: { id: ['TA0007', 'TA0006'], name: ['Discovery', 'Credential Access'] },
        technique: {
          id: ['T1046', 'T1110'],
          name: ['Network Service Discovery', 'Brute Force'],
          subtechnique: { id: ['T1110.001'], name: ['Password Guessing'] },
        },
      },
      source: { ip: '198.51.100.66' },
      destination: { ip: '10.1.1.10' },
      related: { ip: ['198.51.100.66', '10.1.1.10', '10.1.1.11', '10.1.1.12'] },
      network: { bytes: 12_000, packets: 400 },
    });
  });

  test('JSON over the limit first loses only reference URLs, observer and copies of ECS fields', () => {
    const f = sampleFinding();
    const full = render(f, 'json').message;
    const shorter = render(f, 'json', Buffer.byteLength(full) - 1);
    const doc = JSON.parse(parseRfc5424(shorter.message).msg);
    expect(shorter.truncated).toBe(true);
    expect(doc.threat.technique.reference).toBeUndefined();
    expect(doc.observer).toBeUndefined();
    expect(doc.flowsentry.finding).toEqual({
      id: f.id,
      version: f.version,
      severity: 'high',
      confidence: 0.875,
      status: 'open',
      technique_ids: f.technique_ids,
      tactic_ids: f.tactic_ids,
      flows: 200,
      windows: 2,
      exporters: f.exporters,
      run_mode: 'scheduled',
      evidence: JSON.stringify(f.evidence),
      truncated: true,
    });
    expect(doc).toMatchObject({
      source: { ip: f.src_ip },
      destination: { ip: f.dst_ip },
      related: { ip: [f.src_ip, f.dst_ip, ...f.related_ips] },
      network: { bytes: f.bytes, packets: f.packets },
      event: { start: f.first_seen, end: f.last_seen, url: `https://fs.example/api/v1/findings/${f.id}` },
    });
  });

  test('a new finding is "created", a later version "updated"', () => {
    const created = sampleFinding({ updated_at: '2026-01-02T03:15:00.000Z' });
    const sd = parseRfc5424(render(created, 'rfc5424').message).sd['flowsentry@32473']!;
    expect(sd.action).toBe('created');
    expect(parseRfc5424(render(sampleFinding(), 'rfc5424').message).sd['flowsentry@32473']!.action).toBe(
      'updated',
    );
  });
});
