import { techniqueUrl } from '../../detect/attack.js';
import { jsonText } from './text.js';
import { type Formatter, PRODUCT, VENDOR } from './types.js';
import { RISK_SCORE, SEVERITY_NUMBER, tacticName, techniqueName } from './view.js';

/**
 * One JSON object per message with Elastic Common Schema field names (ECS 8.x: event, rule, threat,
 * source, destination, related, network, observer). What ECS has no field for sits under
 * `flowsentry.finding`. JSON.stringify escapes control characters, so a message never holds a raw
 * line break.
 */

/** ATT&CK technique IDs split the way ECS wants them: parents in technique.*, sub-techniques apart. */
function techniques(ids: readonly string[], references: boolean) {
  const parents: string[] = [];
  const subs: string[] = [];
  for (const id of ids) {
    const parent = id.split('.')[0]!;
    if (!parents.includes(parent)) parents.push(parent);
    if (id.includes('.') && !subs.includes(id)) subs.push(id);
  }
  // "Brute Force: Password Guessing" is the sub-technique "Password Guessing" of "Brute Force".
  const subName = (id: string) => techniqueName(id).split(': ').slice(1).join(': ') || techniqueName(id);
  return {
    id: parents,
    name: parents.map(techniqueName),
    ...(references ? { reference: parents.map(techniqueUrl) } : {}),
    ...(subs.length > 0
      ? {
          subtechnique: {
            id: subs,
            name: subs.map(subName),
            ...(references ? { reference: subs.map(techniqueUrl) } : {}),
          },
        }
      : {}),
  };
}

/**
 * `compact` (the size limit's first step) leaves out the ATT&CK reference URLs, observer, and the
 * copies under flowsentry.finding of what ECS fields already carry: nothing about the finding is lost.
 */
export const jsonFormat: Formatter = (v, ctx) => {
  const full = !v.compact;
  const related = [...new Set([v.srcIp, v.dstIp, ...v.relatedIps].filter((ip): ip is string => ip !== null))];
  const document = {
    '@timestamp': v.updatedAt,
    message: v.title,
    event: {
      kind: 'alert',
      category: ['network', 'intrusion_detection'],
      type: ['info'],
      action: `finding-${v.action}`,
      id: v.id,
      severity: SEVERITY_NUMBER[v.severity],
      risk_score: RISK_SCORE[v.severity],
      start: v.firstSeen,
      end: v.lastSeen,
      created: v.createdAt,
      module: 'flowsentry',
      dataset: 'flowsentry.finding',
      provider: 'flowsentry',
      url: v.link,
    },
    rule: { id: v.detector, name: v.detectorTitle, ruleset: 'flowsentry' },
    threat: {
      framework: 'MITRE ATT&CK',
      tactic: {
        id: v.tacticIds,
        name: v.tacticIds.map(tacticName),
        ...(full ? { reference: v.tacticIds.map((id) => `https://attack.mitre.org/tactics/${id}/`) } : {}),
      },
      technique: techniques(v.techniqueIds, full),
    },
    ...(v.srcIp !== null ? { source: { ip: v.srcIp } } : {}),
    ...(v.dstIp !== null ? { destination: { ip: v.dstIp } } : {}),
    related: { ip: related },
    network: { bytes: v.bytes, packets: v.packets },
    ...(full
      ? {
          observer: {
            vendor: VENDOR,
            product: PRODUCT,
            type: 'ids',
            version: ctx.version,
            hostname: ctx.hostname,
          },
        }
      : {}),
    flowsentry: {
      finding: {
        id: v.id,
        version: v.version,
        ...(full ? { detector: v.detector } : {}),
        severity: v.severity,
        confidence: v.confidence,
        status: v.status,
        technique_ids: v.techniqueIds,
        tactic_ids: v.tacticIds,
        ...(full
          ? {
              src_ip: v.srcIp,
              dst_ip: v.dstIp,
              related_ips: v.relatedIps,
              first_seen: v.firstSeen,
              last_seen: v.lastSeen,
              created_at: v.createdAt,
              updated_at: v.updatedAt,
            }
          : {}),
        flows: v.flows,
        ...(full ? { bytes: v.bytes, packets: v.packets } : {}),
        windows: v.windows,
        exporters: v.exporters,
        run_mode: v.runMode,
        ...(full ? { url: v.link } : {}),
        ...(v.evidence !== null ? { evidence: v.evidence } : {}),
        ...(v.truncated ? { truncated: true } : {}),
      },
    },
  };
  return { structuredData: null, msg: jsonText(document) };
};
