import { SequenceTracker } from './sequence-tracker.js';
import type { Template } from './template.js';

/** A set whose template had not arrived yet, kept (bounded) until it does. */
export interface PendingSet {
  readonly templateId: number;
  readonly bytes: Uint8Array;
  readonly receivedMs: number;
  readonly exportMs: number;
  readonly sysUptimeMs: number;
}

export interface StreamStats {
  packets: number;
  records: number;
  optionRecords: number;
  decodeErrors: number;
  missingTemplateSets: number;
  pendingDecodedSets: number;
  pendingDroppedSets: number;
  samplingRateUnknown: number;
  samplingUnresolved: number;
  timeBaseUnknown: number;
  packetSectionUnreadable: number;
  packetSectionNotIp: number;
  firstSeenMs: number;
  lastSeenMs: number;
}

export type ExportVersion = 5 | 9 | 10;

/**
 * State of one export stream: an exporter address plus version plus source ID (v9) / observation
 * domain (IPFIX) / engine type and ID (v5). Templates and sampler tables live here, never keyed by the
 * exporter's source port: RFC 7011 §8 scopes templates to the Transport Session and Observation
 * Domain, RFC 3954 §5.1 to the Source ID, and exporters change source port across restarts.
 */
export class Stream {
  readonly templates = new Map<number, Template>();
  /** Sampler or selector id → rate, from options data (IE 48/302 with 34/50/305-311). */
  readonly samplers = new Map<number, number>();
  /** Rate from options data that named no sampler (e.g. Juniper's System-scope IE 34); 0 = none. */
  defaultSamplingRate = 0;
  /** IPFIX systemInitTimeMilliseconds (IE 160); 0 = unknown. */
  sysInitMs = 0;
  pending: PendingSet[] = [];
  pendingBytes = 0;
  readonly sequence: SequenceTracker;
  readonly stats: StreamStats;

  constructor(
    readonly exporter: Exporter,
    readonly version: ExportVersion | 0,
    readonly domain: number,
    nowMs: number,
  ) {
    this.sequence = new SequenceTracker(version === 9 ? 'packets' : 'records');
    this.stats = {
      packets: 0,
      records: 0,
      optionRecords: 0,
      decodeErrors: 0,
      missingTemplateSets: 0,
      pendingDecodedSets: 0,
      pendingDroppedSets: 0,
      samplingRateUnknown: 0,
      samplingUnresolved: 0,
      timeBaseUnknown: 0,
      packetSectionUnreadable: 0,
      packetSectionNotIp: 0,
      firstSeenMs: nowMs,
      lastSeenMs: nowMs,
    };
  }
}

export function streamKey(version: number, domain: number): number {
  return version * 2 ** 32 + domain;
}

/** An exporting device, identified by its source address (not port). */
export class Exporter {
  readonly streams = new Map<number, Stream>();
  lastSeenMs = 0;

  constructor(
    readonly address: string,
    /** 16 bytes, IPv4-mapped for IPv4, as stored in flows.exporter_address. */
    readonly addressBytes: Uint8Array,
    /** False when outside collector.allowedExporters: its packets are counted and dropped. */
    readonly allowed: boolean,
    /** Rate from configuration (decoder.sampling), 0 = none. */
    readonly configuredRate: number,
    readonly rateForced: boolean,
  ) {}
}
