import { z } from 'zod';
import type { Severity } from '../../../findings/model.js';
import { defineDetector, loadSql } from '../../detector.js';
import { mergeSampleLists } from '../../evidence.js';

const QUERY = loadSql(import.meta.url, 'query.sql');

interface Row {
  src: string;
  dst: string;
  ports: number;
  sample_ports: number[];
  open_ports: number[];
  probes: number;
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  first_seen: string;
  last_seen: string;
  rate: number;
  src_is_internal: number;
  exporters: string[];
}

const params = z.strictObject({
  /** Distinct ports probed on one destination within the lookback (Zeek's scan.zeek: 15 in 5 min). */
  minPorts: z.number().int().min(2).max(65_535).default(15),
  /** Lower bound of the threshold once divided by the sampling rate. */
  minPortsSampled: z.number().int().min(2).max(65_535).default(4),
  /** Ports at which a scan counts as a full sweep of the host (severity rises). */
  widePorts: z.number().int().min(2).max(65_535).default(1_000),
});

/**
 * Vertical port scan (ATT&CK T1046 Network Service Discovery; T1595.001 Active Scanning when the
 * scanner is outside the internal networks). Thresholds after Zeek's scan.zeek (15 failed ports per
 * victim in 5 minutes); Elastic's rule uses 50 ports in a minute.
 */
export const verticalPortScan = defineDetector({
  id: 'vertical-port-scan',
  title: 'Vertical port scan',
  description:
    'One source sends TCP SYNs without completing the handshake to many ports of one destination (IPv4 and IPv6). Ports that answered with SYN-ACK are listed as open.',
  techniques: ['T1046', 'T1595.001'],
  severity: 'medium',
  intervalSeconds: 60,
  lookbackSeconds: 300,
  cooldownSeconds: 3_600,
  falsePositives: [
    'vulnerability scanners and asset inventory (allowlist their addresses)',
    'monitoring that checks many ports of a host',
    'a client retrying a refused service on many ports (rare)',
  ],
  params,
  async run(ctx) {
    const rows = await ctx.query<Row>(QUERY, {
      min_ports: ctx.params.minPorts,
      min_ports_sampled: ctx.params.minPortsSampled,
    });
    return rows.map((r) => {
      const external = Number(r.src_is_internal) === 0;
      const wide = r.ports >= ctx.params.widePorts;
      const severity: Severity = external ? (wide ? 'medium' : 'low') : wide ? 'high' : 'medium';
      return {
        key: [r.src, r.dst],
        title: `${external ? 'External port scan' : 'Port scan'} of ${r.dst} by ${r.src}: ${r.ports} TCP ports probed`,
        severity,
        confidence: Math.min(1, 0.5 + r.ports / (4 * ctx.params.minPorts)),
        techniqueIds: external ? ['T1595.001'] : ['T1046'],
        srcIp: r.src,
        dstIp: r.dst,
        firstSeen: r.first_seen,
        lastSeen: r.last_seen,
        flows: r.new_flows,
        bytes: r.new_bytes,
        packets: r.new_packets,
        exporters: r.exporters,
        evidence: {
          distinct_ports: r.ports,
          ports_sample: r.sample_ports,
          open_ports: r.open_ports,
          probes: r.probes,
          scanner_internal: !external,
          sampling_rate: r.rate,
          threshold_ports: ctx.params.minPorts,
          lookback_seconds: (ctx.window.to - ctx.window.contextFrom) / 1000,
        },
      };
    });
  },
  mergeEvidence(previous, next) {
    return {
      ...next,
      distinct_ports: Math.max(Number(previous.distinct_ports ?? 0), Number(next.distinct_ports ?? 0)),
      ports_sample: mergeSampleLists(previous.ports_sample, next.ports_sample, 50),
      open_ports: mergeSampleLists(previous.open_ports, next.open_ports, 50),
    };
  },
});
