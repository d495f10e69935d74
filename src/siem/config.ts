import { accessSync, constants } from 'node:fs';
import { z } from 'zod';
import { parseHostPort } from '../common/ip.js';
import { SEVERITIES } from '../findings/model.js';

/**
 * The SIEM part of the configuration schema (assembled into src/config/schema.ts). One destination
 * comes from FLOWSENTRY_SYSLOG_URL + FLOWSENTRY_SYSLOG_FORMAT (`siem.syslogUrl`, `siem.format` and the
 * options beside them); the YAML file may list more under `siem.destinations`, each with the same
 * options. Everything is checked here, so the forwarder only opens connections.
 */

/** Payload formats; `json-ecs` is the name the configuration accepted first, kept as an alias of `json`. */
export const SIEM_FORMATS = ['rfc5424', 'cef', 'leef', 'json', 'json-ecs'] as const;

const SYSLOG_URL = /^(udp|tcp|tls):\/\/([^/]+)\/?$/;

/** Splits udp|tcp|tls://host:port; null when it is not one (port 1-65535, IPv6 in brackets). */
export function parseSyslogUrl(
  url: string,
): { transport: 'udp' | 'tcp' | 'tls'; host: string; port: number } | null {
  const m = SYSLOG_URL.exec(url);
  if (!m) return null;
  const target = parseHostPort(m[2]!);
  if (!target || target.port === 0) return null;
  return { transport: m[1] as 'udp' | 'tcp' | 'tls', host: target.host, port: target.port };
}

const syslogUrl = z.string().refine((s) => parseSyslogUrl(s) !== null, {
  message: 'expected udp://host:port, tcp://host:port or tls://host:port',
});

const readableFile = z
  .string()
  .min(1)
  .refine(
    (path) => {
      try {
        accessSync(path, constants.R_OK);
        return true;
      } catch {
        return false;
      }
    },
    { message: 'cannot read this file' },
  );

const techniquePrefix = z
  .string()
  .regex(/^T\d{4}(\.\d{3})?$/, 'expected an ATT&CK technique ID such as T1110 or T1110.001');

const filter = z
  .strictObject({
    /** Findings below this severity are not sent to this destination. */
    minSeverity: z.enum(SEVERITIES).default('low'),
    /** Only findings of these detectors (empty: all). */
    detectors: z.array(z.string().regex(/^[a-z0-9-]{1,64}$/, 'expected a detector id')).default([]),
    /** Only findings with one of these techniques; T1110 also matches T1110.001 (empty: all). */
    techniques: z.array(techniquePrefix).default([]),
  })
  .prefault({});

const tls = z
  .strictObject({
    /** PEM CA bundle the server certificate must chain to (default: Node's built-in roots). */
    caFile: readableFile.optional(),
    /** PEM client certificate and key, for receivers that authenticate senders (RFC 5425 §4.2). */
    certFile: readableFile.optional(),
    keyFile: readableFile.optional(),
    /** Name the server certificate must carry (default: the URL's host). */
    serverName: z.string().min(1).max(253).optional(),
    /** false: accept a certificate for another name (the chain is still verified). */
    verifyServerName: z.boolean().default(true),
  })
  .refine((t) => (t.certFile === undefined) === (t.keyFile === undefined), {
    message: 'certFile and keyFile go together',
  });

const FACILITIES = [
  'kern',
  'user',
  'mail',
  'daemon',
  'auth',
  'syslog',
  'lpr',
  'news',
  'uucp',
  'cron',
  'authpriv',
  'ftp',
  'ntp',
  'audit',
  'alert',
  'clock',
  'local0',
  'local1',
  'local2',
  'local3',
  'local4',
  'local5',
  'local6',
  'local7',
] as const;

/** RFC 5424 §6.2.1 facility codes, in order. */
export function facilityCode(name: (typeof FACILITIES)[number]): number {
  return FACILITIES.indexOf(name);
}

/** The options every destination has, the FLOWSENTRY_SYSLOG_URL one included. */
const destinationOptions = {
  /** TCP and TLS only: RFC 6587 octet counting (default) or a line feed after each message. */
  framing: z.enum(['octet-counting', 'lf']).optional(),
  /** The syslog header: RFC 5424 (default) or the BSD format of RFC 3164. */
  header: z.enum(['rfc5424', 'rfc3164']).default('rfc5424'),
  /**
   * Largest message in bytes (header included, framing not): longer ones are shortened, evidence
   * first, so that they stay valid. Default 2048 for UDP (RFC 5426 §3.2), 8192 for TCP and TLS
   * (rsyslog's default maxMessageSize). At least 2048, what RFC 5424 §6.1 says receivers should take:
   * below it the required fields alone may not fit.
   */
  maxMessageBytes: z.number().int().min(2048).max(1_048_576).optional(),
  facility: z.enum(FACILITIES).default('local0'),
  /** At most one update of a finding per this many seconds (severity and status changes go at once). */
  updateIntervalSeconds: z.number().int().min(0).max(86_400).default(300),
  tls: tls.optional(),
  filter,
};

const destinationName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,47}$/, 'expected lowercase letters, digits, _ and - (at most 48)');

const destination = z.strictObject({
  /** Names the destination in metrics, the API and the outbox (keep it when the URL changes). */
  name: destinationName,
  url: syslogUrl,
  format: z.enum(SIEM_FORMATS).default('rfc5424'),
  ...destinationOptions,
});

export type SiemDestinationConfig = z.infer<typeof destination>;

/** Cross-field rules of one destination, reported at the destination's path. */
function checkDestination(
  d: { url: string; format: string; framing?: string | undefined; header: string; tls?: unknown },
  ctx: z.RefinementCtx,
  path: (string | number)[],
  names: { url: string; format: string },
): void {
  if (!d.url) return;
  const target = parseSyslogUrl(d.url);
  if (!target) return;
  if (target.transport === 'udp' && d.framing !== undefined) {
    ctx.addIssue({
      code: 'custom',
      path: [...path, 'framing'],
      message: 'framing applies to tcp:// and tls:// only (UDP sends one message per datagram)',
    });
  }
  if (target.transport !== 'tls' && d.tls !== undefined) {
    ctx.addIssue({
      code: 'custom',
      path: [...path, 'tls'],
      message: `TLS settings need a tls:// ${names.url}`,
    });
  }
  if (d.format === 'rfc5424' && d.header === 'rfc3164') {
    ctx.addIssue({
      code: 'custom',
      path: [...path, names.format],
      message: 'format rfc5424 carries the finding in RFC 5424 structured data: use header rfc5424',
    });
  }
}

export const siemSchema = z
  .strictObject({
    /** udp://, tcp:// or tls://host:port: the destination named by `name` (empty: none). */
    syslogUrl: z
      .string()
      .refine((s) => s === '' || parseSyslogUrl(s) !== null, {
        message: 'expected udp://host:port, tcp://host:port or tls://host:port',
      })
      .default(''),
    format: z.enum(SIEM_FORMATS).default('rfc5424'),
    name: destinationName.default('default'),
    ...destinationOptions,
    /** More destinations, each with its own URL, format, options and filter. */
    destinations: z.array(destination).default([]),
    /**
     * IANA Private Enterprise Number of the RFC 5424 SD-ID (`flowsentry@<PEN>`). 32473 is the number
     * RFC 5612 reserves for documentation; set your organisation's own.
     */
    enterpriseNumber: z
      .string()
      .regex(/^[1-9]\d{0,9}(\.\d{1,10})*$/, 'expected a private enterprise number such as 32473')
      .default('32473'),
    /** HOSTNAME in the header (default: this machine's name). */
    hostname: z
      .string()
      .regex(/^[!-~]{1,255}$/, 'printable ASCII without spaces, at most 255 characters')
      .optional(),
    /** APP-NAME (RFC 5424) and TAG (RFC 3164). */
    appName: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,32}$/, 'letters, digits, _ . - (at most 32)')
      .default('flowsentry'),
    /** How often each destination looks for new or updated findings. */
    pollIntervalMs: z.number().int().min(100).max(60_000).default(1_000),
    /**
     * Finding versions come from each writer's clock: a row may land with a version a little below
     * one already read. Each read looks back this far and skips what it already handled.
     */
    overlapSeconds: z.number().int().min(1).max(3_600).default(30),
    /** After a TCP/TLS connection error, what was written in the last this-many seconds is sent again. */
    resendSeconds: z.number().int().min(0).max(300).default(5),
    /** A destination seen for the first time starts with the findings updated in the last this-many hours. */
    backlogHours: z
      .number()
      .min(0)
      .max(24 * 365)
      .default(24),
    /** Finding updates held in memory per destination; the rest waits in the findings table. */
    maxQueued: z.number().int().min(100).max(1_000_000).default(10_000),
    retry: z
      .strictObject({
        minMs: z.number().int().min(10).max(600_000).default(1_000),
        maxMs: z.number().int().min(10).max(3_600_000).default(60_000),
      })
      .prefault({}),
  })
  .prefault({})
  .superRefine((siem, ctx) => {
    checkDestination({ ...siem, url: siem.syslogUrl }, ctx, [], { url: 'syslogUrl', format: 'format' });
    const seen = new Set<string>(siem.syslogUrl ? [siem.name] : []);
    siem.destinations.forEach((d, i) => {
      checkDestination(d, ctx, ['destinations', i], { url: 'url', format: 'format' });
      if (seen.has(d.name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['destinations', i, 'name'],
          message: `another destination is named "${d.name}"`,
        });
      }
      seen.add(d.name);
    });
    if (siem.retry.maxMs < siem.retry.minMs) {
      ctx.addIssue({ code: 'custom', path: ['retry', 'maxMs'], message: 'must be at least retry.minMs' });
    }
  });

export type SiemConfig = z.infer<typeof siemSchema>;
