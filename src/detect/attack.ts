/**
 * The MITRE ATT&CK (Enterprise) tactics and techniques flowsentry's detectors map to, with their
 * names as ATT&CK publishes them (https://attack.mitre.org/). Findings carry the IDs; the names are
 * for SIEM formats (ECS threat.tactic.name, threat.technique.name), the coverage endpoint and the
 * ATT&CK Navigator layer. A detector naming an ID missing here fails the catalog test.
 */
export const TACTICS = {
  TA0043: 'Reconnaissance',
  TA0001: 'Initial Access',
  TA0003: 'Persistence',
  TA0006: 'Credential Access',
  TA0007: 'Discovery',
  TA0008: 'Lateral Movement',
  TA0010: 'Exfiltration',
  TA0011: 'Command and Control',
  TA0040: 'Impact',
} as const;

export type TacticId = keyof typeof TACTICS;

/** Each technique with its name and the tactics it sits under in the Enterprise matrix. */
export const TECHNIQUES = {
  T1018: { name: 'Remote System Discovery', tactics: ['TA0007'] },
  T1021: { name: 'Remote Services', tactics: ['TA0008'] },
  'T1021.001': { name: 'Remote Services: Remote Desktop Protocol', tactics: ['TA0008'] },
  'T1021.002': { name: 'Remote Services: SMB/Windows Admin Shares', tactics: ['TA0008'] },
  'T1021.004': { name: 'Remote Services: SSH', tactics: ['TA0008'] },
  'T1021.005': { name: 'Remote Services: VNC', tactics: ['TA0008'] },
  'T1021.006': { name: 'Remote Services: Windows Remote Management', tactics: ['TA0008'] },
  T1030: { name: 'Data Transfer Size Limits', tactics: ['TA0010'] },
  T1041: { name: 'Exfiltration Over C2 Channel', tactics: ['TA0010'] },
  T1046: { name: 'Network Service Discovery', tactics: ['TA0007'] },
  T1048: { name: 'Exfiltration Over Alternative Protocol', tactics: ['TA0010'] },
  'T1048.003': {
    name: 'Exfiltration Over Alternative Protocol: Exfiltration Over Unencrypted Non-C2 Protocol',
    tactics: ['TA0010'],
  },
  T1071: { name: 'Application Layer Protocol', tactics: ['TA0011'] },
  'T1071.001': { name: 'Application Layer Protocol: Web Protocols', tactics: ['TA0011'] },
  'T1071.004': { name: 'Application Layer Protocol: DNS', tactics: ['TA0011'] },
  T1090: { name: 'Proxy', tactics: ['TA0011'] },
  'T1090.003': { name: 'Proxy: Multi-hop Proxy', tactics: ['TA0011'] },
  T1095: { name: 'Non-Application Layer Protocol', tactics: ['TA0011'] },
  T1110: { name: 'Brute Force', tactics: ['TA0006'] },
  'T1110.001': { name: 'Brute Force: Password Guessing', tactics: ['TA0006'] },
  'T1110.003': { name: 'Brute Force: Password Spraying', tactics: ['TA0006'] },
  T1133: { name: 'External Remote Services', tactics: ['TA0001', 'TA0003'] },
  T1190: { name: 'Exploit Public-Facing Application', tactics: ['TA0001'] },
  T1496: { name: 'Resource Hijacking', tactics: ['TA0040'] },
  'T1496.001': { name: 'Resource Hijacking: Compute Hijacking', tactics: ['TA0040'] },
  T1498: { name: 'Network Denial of Service', tactics: ['TA0040'] },
  'T1498.001': { name: 'Network Denial of Service: Direct Network Flood', tactics: ['TA0040'] },
  'T1498.002': { name: 'Network Denial of Service: Reflection Amplification', tactics: ['TA0040'] },
  T1499: { name: 'Endpoint Denial of Service', tactics: ['TA0040'] },
  'T1499.001': { name: 'Endpoint Denial of Service: OS Exhaustion Flood', tactics: ['TA0040'] },
  T1570: { name: 'Lateral Tool Transfer', tactics: ['TA0008'] },
  T1571: { name: 'Non-Standard Port', tactics: ['TA0011'] },
  T1572: { name: 'Protocol Tunneling', tactics: ['TA0011'] },
  T1573: { name: 'Encrypted Channel', tactics: ['TA0011'] },
  T1595: { name: 'Active Scanning', tactics: ['TA0043'] },
  'T1595.001': { name: 'Active Scanning: Scanning IP Blocks', tactics: ['TA0043'] },
  'T1595.002': { name: 'Active Scanning: Vulnerability Scanning', tactics: ['TA0043'] },
} as const satisfies Record<string, { name: string; tactics: readonly TacticId[] }>;

export type TechniqueId = keyof typeof TECHNIQUES;

export function isTechniqueId(id: string): id is TechniqueId {
  return Object.hasOwn(TECHNIQUES, id);
}

export function isTacticId(id: string): id is TacticId {
  return Object.hasOwn(TACTICS, id);
}

/** The tactics of a set of techniques, in the matrix's order. */
export function tacticsOf(techniques: readonly TechniqueId[]): TacticId[] {
  const wanted = new Set<string>(techniques.flatMap((t) => TECHNIQUES[t].tactics));
  return (Object.keys(TACTICS) as TacticId[]).filter((t) => wanted.has(t));
}

/** https://attack.mitre.org/techniques/T1110/001/ */
export function techniqueUrl(id: string): string {
  return `https://attack.mitre.org/techniques/${id.replace('.', '/')}/`;
}
