import type { DetectorDefinition } from './detector.js';
import { cryptoMining } from './detectors/crypto-mining/detector.js';
import { dnsTunnelling } from './detectors/dns-tunnelling/detector.js';
import { exfiltration } from './detectors/exfiltration/detector.js';
import { threatIntel } from './detectors/threat-intel/detector.js';
import { verticalPortScan } from './detectors/vertical-port-scan/detector.js';

/**
 * Every detector flowsentry ships, in the order the README lists them. Adding a detector: its folder
 * under detectors/ and one line here.
 */
export const DETECTORS: readonly DetectorDefinition[] = [
  verticalPortScan,
  exfiltration,
  dnsTunnelling,
  threatIntel,
  cryptoMining,
] as readonly DetectorDefinition[];
