import { oneLine } from './text.js';
import { type Formatter, PRODUCT, VENDOR } from './types.js';
import { epochMs, TEN_POINT_SEVERITY, tacticName } from './view.js';

/**
 * ArcSight Common Event Format, version 0 (Micro Focus "Implementing ArcSight CEF"):
 * `CEF:0|Vendor|Product|Version|Signature ID|Name|Severity|Extension`.
 */

/** Header fields escape `\` and `|` with a backslash; they cannot hold line breaks. */
export function cefHeader(text: string): string {
  return oneLine(text).replace(/[\\|]/g, (c) => `\\${c}`);
}

/**
 * Extension values escape `\` and `=` with a backslash and write CR and LF as `\r` and `\n`; `|`
 * needs no escape there. Other control characters become spaces.
 */
export function cefValue(text: string): string {
  return oneLine(
    text
      .replace(/[\\=]/g, (c) => `\\${c}`)
      .replace(/\r/g, '\\r')
      .replace(/\n/g, '\\n'),
  );
}

function isIPv4(ip: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(ip);
}

/**
 * The finding: rt/start/end as epoch ms, src/dst for IPv4 (c6a2/c6a3 for IPv6, the dictionary's
 * IPv6 source and destination), cnt = flows, and custom strings and numbers, each with its label,
 * for what the dictionary has no key for (ATT&CK has none: mitreTactic / mitreTechnique).
 */
export const cefFormat: Formatter = (v, ctx) => {
  const ext: Array<[string, string | number | null]> = [
    ['rt', epochMs(v.updatedAt)],
    ['start', epochMs(v.firstSeen)],
    ['end', epochMs(v.lastSeen)],
    ['externalId', v.id],
    ['act', v.action],
    ['cat', v.tacticIds.map(tacticName).join(',')],
    ['msg', v.title],
    ['dvchost', ctx.hostname],
  ];
  for (const [ip, v4, v6, label] of [
    [v.srcIp, 'src', 'c6a2', 'Source IPv6 Address'],
    [v.dstIp, 'dst', 'c6a3', 'Destination IPv6 Address'],
  ] as const) {
    if (ip === null) continue;
    if (isIPv4(ip)) ext.push([v4, ip]);
    else ext.push([v6, ip], [`${v6}Label`, label]);
  }
  ext.push(['cnt', v.flows]);
  const custom = (key: string, label: string, value: string | number | null) => {
    if (value !== null && value !== '') ext.push([`${key}Label`, label], [key, value]);
  };
  custom('cn1', 'findingVersion', v.version);
  custom('cn2', 'bytes', v.bytes);
  custom('cn3', 'packets', v.packets);
  custom('cfp1', 'confidence', v.confidence);
  custom('cs1', 'mitreTactic', v.tacticIds.join(','));
  custom('cs2', 'mitreTechnique', v.techniqueIds.join(','));
  custom('cs3', 'findingUrl', v.link);
  custom('cs4', 'relatedIps', v.relatedIps.join(','));
  custom('cs5', 'evidence', v.evidence);
  custom('cs6', 'status', v.status);
  if (v.truncated) custom('flexString1', 'truncated', 'true');
  const extension = ext
    .filter((e): e is [string, string | number] => e[1] !== null && e[1] !== '')
    .map(([k, value]) => `${k}=${cefValue(String(value))}`)
    .join(' ');
  const header = [
    'CEF:0',
    cefHeader(VENDOR),
    cefHeader(PRODUCT),
    cefHeader(ctx.version),
    cefHeader(v.detector),
    cefHeader(v.detectorTitle),
    String(TEN_POINT_SEVERITY[v.severity]),
  ].join('|');
  return { structuredData: null, msg: `${header}|${extension}` };
};
