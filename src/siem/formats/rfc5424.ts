import { oneLine } from './text.js';
import type { Formatter } from './types.js';
import type { FindingView } from './view.js';

/**
 * RFC 5424 structured data: PARAM-VALUE escapes `"`, `\` and `]` with a backslash (§6.3.3), and has
 * no escape for line breaks, so control characters become spaces. Lists are comma-separated.
 */
export function sdValue(text: string): string {
  return oneLine(text).replace(/[\\"\]]/g, (c) => `\\${c}`);
}

/**
 * The finding's fields as SD-PARAMs, in a fixed order. PARAM-NAMEs are at most 32 printable ASCII
 * characters without `=`, space, `]` or `"` (§6.3.3).
 */
export function findingParams(v: FindingView): Array<[string, string]> {
  const params: Array<[string, string | number | null]> = [
    ['id', v.id],
    ['version', v.version],
    ['action', v.action],
    ['detector', v.detector],
    ['severity', v.severity],
    ['confidence', v.confidence],
    ['status', v.status],
    ['tactics', v.tacticIds.join(',')],
    ['techniques', v.techniqueIds.join(',')],
    ['src_ip', v.srcIp],
    ['dst_ip', v.dstIp],
    ['related_ips', v.relatedIps.join(',')],
    ['first_seen', v.firstSeen],
    ['last_seen', v.lastSeen],
    ['created_at', v.createdAt],
    ['updated_at', v.updatedAt],
    ['flows', v.flows],
    ['bytes', v.bytes],
    ['packets', v.packets],
    ['windows', v.windows],
    ['exporters', v.exporters.join(',')],
    ['run_mode', v.runMode],
    ['link', v.link],
    ['evidence', v.evidence],
    ['truncated', v.truncated ? 'true' : null],
  ];
  return params
    .filter((p): p is [string, string | number] => p[1] !== null && p[1] !== '')
    .map(([k, value]) => [k, String(value)]);
}

/** `[flowsentry@32473 id="..." ...]` with the finding; MSG is its title. */
export const rfc5424Format: Formatter = (v, ctx) => {
  const params = findingParams(v)
    .map(([k, value]) => `${k}="${sdValue(value)}"`)
    .join(' ');
  return { structuredData: `[${ctx.sdId} ${params}]`, msg: oneLine(v.title) };
};
