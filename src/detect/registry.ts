import type { DetectorDefinition } from './detector.js';
import { beaconing } from './detectors/beaconing/detector.js';
import { icmpTunnelling } from './detectors/icmp-tunnelling/detector.js';
import { longConnection } from './detectors/long-connection/detector.js';
import { nonStandardPort } from './detectors/non-standard-port/detector.js';
import { verticalPortScan } from './detectors/vertical-port-scan/detector.js';

/**
 * Every detector flowsentry ships, in the order the README lists them. Adding a detector: its folder
 * under detectors/ and one line here.
 */
export const DETECTORS: readonly DetectorDefinition[] = [
  verticalPortScan,
  beaconing,
  longConnection,
  nonStandardPort,
  icmpTunnelling,
] as readonly DetectorDefinition[];
