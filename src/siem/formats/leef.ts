import { oneLine } from './text.js';
import { type Formatter, PRODUCT, VENDOR } from './types.js';
import { TEN_POINT_SEVERITY, tacticName } from './view.js';

/**
 * IBM QRadar Log Event Extended Format 2.0 (IBM "LEEF format guide"):
 * `LEEF:2.0|Vendor|Product|Version|EventID|DelimiterCharacter|key=value<delim>key=value...`.
 *
 * LEEF defines no escape for the delimiter, so the delimiter is one that cannot occur in a value: a
 * tab (`x09`), and every control character in values, tabs included, becomes a space.
 */
export const LEEF_DELIMITER = '\t';

/** Header fields keep letters, digits and `. _ - space`: LEEF defines no escape for `|` there either. */
export function leefHeader(text: string): string {
  return text.replace(/[^A-Za-z0-9._ -]/g, '') || '-';
}

export function leefValue(text: string): string {
  return oneLine(text);
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** devTimeFormat as a Java SimpleDateFormat pattern, the one IBM's guide suggests with zone. */
export const LEEF_TIME_FORMAT = 'MMM dd yyyy HH:mm:ss.SSS z';

/** `Dec 03 2026 16:05:38.807 GMT` */
export function leefTime(iso: string): string {
  const d = new Date(iso);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${MONTHS[d.getUTCMonth()]} ${p(d.getUTCDate())} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)} GMT`;
}

/**
 * QRadar's predefined keys where one fits (cat, devTime, devTimeFormat, sev, src, dst,
 * totalPackets), custom keys for the rest of the finding.
 */
export const leefFormat: Formatter = (v, ctx) => {
  const attributes: Array<[string, string | number | null]> = [
    ['cat', v.tacticIds.map(tacticName).join(',') || v.detector],
    ['devTime', leefTime(v.updatedAt)],
    ['devTimeFormat', LEEF_TIME_FORMAT],
    ['sev', TEN_POINT_SEVERITY[v.severity]],
    ['src', v.srcIp],
    ['dst', v.dstIp],
    ['totalPackets', v.packets],
    ['findingId', v.id],
    ['findingVersion', v.version],
    ['action', v.action],
    ['detector', v.detector],
    ['title', v.title],
    ['severity', v.severity],
    ['confidence', v.confidence],
    ['status', v.status],
    ['mitreTactic', v.tacticIds.join(',')],
    ['mitreTechnique', v.techniqueIds.join(',')],
    ['relatedIps', v.relatedIps.join(',')],
    ['firstSeen', v.firstSeen],
    ['lastSeen', v.lastSeen],
    ['flows', v.flows],
    ['totalBytes', v.bytes],
    ['findingUrl', v.link],
    ['evidence', v.evidence],
    ['truncated', v.truncated ? 'true' : null],
  ];
  const body = attributes
    .filter((a): a is [string, string | number] => a[1] !== null && a[1] !== '')
    .map(([k, value]) => `${k}=${leefValue(String(value))}`)
    .join(LEEF_DELIMITER);
  const header = [
    'LEEF:2.0',
    leefHeader(VENDOR),
    leefHeader(PRODUCT),
    leefHeader(ctx.version),
    leefHeader(v.detector),
    'x09',
  ].join('|');
  return { structuredData: null, msg: `${header}|${body}` };
};
