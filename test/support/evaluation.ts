import type { Finding } from '../../src/findings/model.js';
import type { AttackLabel } from './scenario.js';

export interface Evaluation {
  readonly attacks: number;
  readonly detected: ReadonlyArray<{ label: AttackLabel; findings: readonly Finding[] }>;
  readonly missed: readonly AttackLabel[];
  /** Findings that match no attack: what an analyst would chase for nothing. */
  readonly falseFindings: readonly Finding[];
  readonly recall: number;
  readonly falsePerHour: number;
}

/** Slack around an attack's labelled time span within which a finding still belongs to it. */
const SLACK_MS = 5 * 60_000;

function involves(f: Finding, label: AttackLabel): boolean {
  const ips = new Set([f.src_ip, f.dst_ip, ...f.related_ips]);
  if (!label.entities.some((e) => ips.has(e))) return false;
  return (
    Date.parse(f.first_seen) <= label.endMs + SLACK_MS && Date.parse(f.last_seen) >= label.startMs - SLACK_MS
  );
}

/**
 * Scores findings against labelled attacks, per campaign (Garcia et al. 2014, CTU-13: per attack,
 * not per flow). An attack is detected when a finding of one of its detectors involves one of its
 * entities during it; a finding is false when it involves no attack at all (a finding of another
 * detector about the same attack, such as a volumetric-flood finding on a SYN flood's victim, is not
 * counted as false).
 */
export function evaluate(
  findings: readonly Finding[],
  labels: readonly AttackLabel[],
  hours: number,
): Evaluation {
  const detected: Array<{ label: AttackLabel; findings: Finding[] }> = [];
  const missed: AttackLabel[] = [];
  for (const label of labels) {
    const hits = findings.filter((f) => label.detectors.includes(f.detector) && involves(f, label));
    if (hits.length > 0) detected.push({ label, findings: hits });
    else missed.push(label);
  }
  const falseFindings = findings.filter((f) => !labels.some((l) => involves(f, l)));
  return {
    attacks: labels.length,
    detected,
    missed,
    falseFindings,
    recall: labels.length === 0 ? 1 : detected.length / labels.length,
    falsePerHour: falseFindings.length / hours,
  };
}
