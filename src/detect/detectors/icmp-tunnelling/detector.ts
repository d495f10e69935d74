import { z } from 'zod';
import type { TechniqueId } from '../../attack.js';
import { defineDetector, loadSql } from '../../detector.js';

const QUERY = loadSql(import.meta.url, 'query.sql');

interface Row {
  host: string;
  peer: string;
  req_packets: number;
  req_bytes: number;
  rep_packets: number;
  rep_bytes: number;
  first_ms: number;
  last_ms: number;
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  rate: number;
  v6: number;
  exporters: string[];
}

const params = z.strictObject({
  /**
   * Echo requests per pair in the lookback for the large-payload test (MTU probes send a handful).
   * Packet counts are already scaled by the sampling rate, so this applies as it is.
   */
  minPackets: z.number().int().min(1).default(50),
  /** Mean IP packet size (bytes) from which echo traffic is not ping (Elastic: 256 B). */
  minMeanPacketBytes: z.number().int().min(64).default(256),
  /** Echo bytes per pair in the lookback (both directions) from which volume alone is reported. */
  volumeBytes: z.number().int().min(1).default(5_000_000),
  /** Replies whose bytes differ from the requests' by more than this share do not echo them (RFC 792). */
  asymmetryShare: z.number().min(0).max(10).default(0.2),
  /** Also evaluate pairs of internal hosts. */
  includeInternal: z.boolean().default(false),
});

/**
 * ICMP tunnelling (ATT&CK T1095 Non-Application Layer Protocol; T1572 Protocol Tunneling when the
 * replies carry other data than the requests): echo traffic that carries data. RFC 792 (and RFC 4443 for
 * ICMPv6) says an echo reply returns the request's data, so replies that differ in size from their
 * requests are not ping at all: something answers with its own data, as ptunnel, hans or icmpsh do.
 */
export const icmpTunnelling = defineDetector({
  id: 'icmp-tunnelling',
  title: 'ICMP tunnelling',
  description:
    'An internal host exchanges ICMP or ICMPv6 echo traffic with an external host that is not ping: many echo packets with a large mean size (256 B), or a high volume (5 MB in an hour). Replies that do not mirror the requests (RFC 792) raise the severity.',
  techniques: ['T1095', 'T1572'],
  severity: 'medium',
  intervalSeconds: 300,
  lookbackSeconds: 3_600,
  cooldownSeconds: 3_600,
  falsePositives: [
    'network tests with large pings (ping -s, path MTU discovery tools run for minutes)',
    'monitoring that pings one external host often with large packets (allowlist it)',
    'some VPN and SD-WAN appliances that probe links with ICMP',
  ],
  params,
  async run(ctx) {
    const p = ctx.params;
    const rows = await ctx.query<Row>(QUERY, {
      min_packets: p.minPackets,
      min_mean_bytes: p.minMeanPacketBytes,
      volume_bytes: p.volumeBytes,
      include_internal: p.includeInternal ? 1 : 0,
    });
    return rows.map((r) => {
      const reqMean = r.req_packets > 0 ? r.req_bytes / r.req_packets : 0;
      const repMean = r.rep_packets > 0 ? r.rep_bytes / r.rep_packets : 0;
      const rate = Math.max(1, Number(r.rate));
      const large = r.req_packets >= p.minPackets && Math.max(reqMean, repMean) >= p.minMeanPacketBytes;
      const total = Number(r.req_bytes) + Number(r.rep_bytes);
      // Replies that do not return the requests' data (only judged with replies seen for most requests).
      const asymmetric =
        r.rep_packets >= r.req_packets * 0.5 &&
        Math.abs(r.rep_bytes - r.req_bytes) > p.asymmetryShare * Math.max(r.req_bytes, 1);
      const techniqueIds: TechniqueId[] = asymmetric ? ['T1095', 'T1572'] : ['T1095'];
      const icmp = Number(r.v6) === 1 ? 'ICMPv6' : 'ICMP';
      return {
        key: [r.host, r.peer],
        title: `${icmp} tunnelling between ${r.host} and ${r.peer}: ${r.req_packets} echo requests of ${Math.round(reqMean)} B on average, ${(total / 1_000_000).toFixed(2)} MB${asymmetric ? ', replies do not echo the requests' : ''}`,
        severity: asymmetric ? 'high' : 'medium',
        confidence: asymmetric ? 0.8 : large ? 0.6 : 0.5,
        techniqueIds,
        srcIp: r.host,
        dstIp: r.peer,
        firstSeen: Number(r.first_ms),
        lastSeen: Number(r.last_ms),
        flows: r.new_flows,
        bytes: r.new_bytes,
        packets: r.new_packets,
        exporters: r.exporters,
        evidence: {
          protocol: icmp,
          reason: large ? (total >= p.volumeBytes ? 'large-payload+volume' : 'large-payload') : 'volume',
          echo_requests: r.req_packets,
          echo_request_bytes: r.req_bytes,
          echo_replies: r.rep_packets,
          echo_reply_bytes: r.rep_bytes,
          mean_request_bytes: Math.round(reqMean),
          mean_reply_bytes: Math.round(repMean),
          replies_mirror_requests: !asymmetric,
          duration_seconds: Math.round((Number(r.last_ms) - Number(r.first_ms)) / 1000),
          sampling_rate: rate,
          threshold_packets: p.minPackets,
          threshold_mean_bytes: p.minMeanPacketBytes,
          threshold_volume_bytes: p.volumeBytes,
          lookback_seconds: (ctx.window.to - ctx.window.contextFrom) / 1000,
        },
      };
    });
  },
});
