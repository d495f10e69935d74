import type { FormatContext, Formatter, Payload } from './formats/index.js';
import { cut, utf8Length } from './formats/text.js';
import { type FindingView, SYSLOG_SEVERITY } from './formats/view.js';

/** How a destination writes the syslog header. Host and app name are already printable ASCII. */
export interface HeaderSpec {
  readonly header: 'rfc5424' | 'rfc3164';
  readonly facility: number;
  readonly hostname: string;
  readonly appName: string;
}

/** RFC 5424 MSGID of every finding message (at most 32 printable ASCII characters). */
export const MSGID = 'finding';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * The syslog message around a payload.
 *
 * RFC 5424 (§6): `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG`, the time in
 * RFC 3339 UTC with milliseconds, PROCID nil. MSG is sent without the UTF-8 BOM: several receivers
 * show it as part of the text and JSON parsers refuse it; every major receiver reads MSG as UTF-8.
 *
 * RFC 3164 (§4.1): `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MSG`. That header has no year and no zone:
 * flowsentry writes UTC.
 */
export function syslogMessage(spec: HeaderSpec, severity: number, time: string, payload: Payload): string {
  const pri = spec.facility * 8 + severity;
  const d = new Date(time);
  if (spec.header === 'rfc3164') {
    const p = (n: number) => String(n).padStart(2, '0');
    const stamp = `${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
    return `<${pri}>${stamp} ${spec.hostname} ${spec.appName}: ${payload.msg}`;
  }
  return `<${pri}>1 ${d.toISOString()} ${spec.hostname} ${spec.appName} - ${MSGID} ${payload.structuredData ?? '-'} ${payload.msg}`;
}

export type Framing = 'octet-counting' | 'lf' | 'datagram';

/**
 * RFC 6587 framing for stream transports: octet counting (`MSG-LEN SP SYSLOG-MSG`, the length in
 * bytes, §3.4.1) or a trailing LF (§3.4.2; messages never contain one). A datagram carries the
 * message alone (RFC 5426 §3.1).
 */
export function frame(message: string, framing: Framing): Buffer {
  if (framing === 'octet-counting') return Buffer.from(`${utf8Length(message)} ${message}`, 'utf8');
  if (framing === 'lf') return Buffer.from(`${message}\n`, 'utf8');
  return Buffer.from(message, 'utf8');
}

export interface RenderSpec {
  readonly format: Formatter;
  readonly header: HeaderSpec;
  readonly context: FormatContext;
  /** Largest message in bytes, header included, framing not. */
  readonly maxBytes: number;
}

export interface Rendered {
  readonly message: string;
  /** Parts were shortened or dropped to fit maxBytes. */
  readonly truncated: boolean;
  /** Even the shortest form is above maxBytes (sent as it is). */
  readonly oversize: boolean;
}

/** The largest n in [0, max] for which fits(n) holds (fits is monotone: true up to some n), or -1. */
function largest(max: number, fits: (n: number) => boolean): number {
  if (!fits(0)) return -1;
  let lo = 0;
  let hi = max;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * Renders a finding within the size limit, shortening in this order until it fits: what only
 * decorates or repeats (the view's `compact`), the evidence, the exporters and related IPs, the title,
 * and last the ATT&CK lists beyond their first entries.
 * Each step re-renders the whole message, so what goes out is always a well-formed message of its
 * format; the header, ids, detector, severity, entities, times and link are never cut.
 */
export function renderMessage(view: FindingView, spec: RenderSpec): Rendered {
  const build = (v: FindingView) =>
    syslogMessage(spec.header, SYSLOG_SEVERITY[v.severity], v.updatedAt, spec.format(v, spec.context));
  const fitsAs = (v: FindingView) => utf8Length(build(v)) <= spec.maxBytes;
  const full = build(view);
  if (utf8Length(full) <= spec.maxBytes) return { message: full, truncated: false, oversize: false };

  // First what only decorates or repeats (JSON: reference URLs, copies of ECS fields).
  let v: FindingView = { ...view, truncated: true, compact: true };
  if (fitsAs(v)) return done(v);
  const evidence = view.evidence ?? '';
  const keep = largest(evidence.length, (n) => fitsAs({ ...v, evidence: cut(evidence, n) }));
  // Evidence shortened to almost nothing says nothing: drop it instead.
  if (keep >= 16) return done({ ...v, evidence: cut(evidence, keep) });
  v = { ...v, evidence: null };
  v = { ...v, exporters: [] };
  const ips = largest(view.relatedIps.length, (n) =>
    fitsAs({ ...v, relatedIps: view.relatedIps.slice(0, n) }),
  );
  if (ips >= 0) return done({ ...v, relatedIps: view.relatedIps.slice(0, ips) });
  v = { ...v, relatedIps: [] };
  const title = largest(view.title.length, (n) => fitsAs({ ...v, title: cut(view.title, n) }));
  if (title >= 24) return done({ ...v, title: cut(view.title, title) });
  v = {
    ...v,
    title: cut(view.title, 24),
    detectorTitle: view.detector,
    tacticIds: view.tacticIds.slice(0, 2),
    techniqueIds: view.techniqueIds.slice(0, 2),
  };
  const last = build(v);
  return { message: last, truncated: true, oversize: utf8Length(last) > spec.maxBytes };

  function done(fitting: FindingView): Rendered {
    return { message: build(fitting), truncated: true, oversize: false };
  }
}
