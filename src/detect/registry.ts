import type { DetectorDefinition } from './detector.js';
import { beaconing } from './detectors/beaconing/detector.js';
import { bruteForce } from './detectors/brute-force/detector.js';
import { cryptoMining } from './detectors/crypto-mining/detector.js';
import { dnsTunnelling } from './detectors/dns-tunnelling/detector.js';
import { exfiltration } from './detectors/exfiltration/detector.js';
import { exposedRemoteService } from './detectors/exposed-remote-service/detector.js';
import { horizontalSweep } from './detectors/horizontal-sweep/detector.js';
import { icmpTunnelling } from './detectors/icmp-tunnelling/detector.js';
import { lateralMovement } from './detectors/lateral-movement/detector.js';
import { longConnection } from './detectors/long-connection/detector.js';
import { nonStandardPort } from './detectors/non-standard-port/detector.js';
import { synFlood } from './detectors/syn-flood/detector.js';
import { threatIntel } from './detectors/threat-intel/detector.js';
import { udpAmplification } from './detectors/udp-amplification/detector.js';
import { verticalPortScan } from './detectors/vertical-port-scan/detector.js';
import { volumetricFlood } from './detectors/volumetric-flood/detector.js';

/**
 * Every detector flowsentry ships, in the order the README lists them. Adding a detector: its folder
 * under detectors/ and one line here.
 */
export const DETECTORS: readonly DetectorDefinition[] = [
  verticalPortScan,
  horizontalSweep,
  bruteForce,
  exposedRemoteService,
  lateralMovement,
  volumetricFlood,
  synFlood,
  udpAmplification,
  exfiltration,
  beaconing,
  longConnection,
  dnsTunnelling,
  icmpTunnelling,
  nonStandardPort,
  threatIntel,
  cryptoMining,
] as readonly DetectorDefinition[];
