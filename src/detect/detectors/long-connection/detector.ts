import { z } from 'zod';
import type { Severity } from '../../../findings/model.js';
import { defineDetector, loadSql } from '../../detector.js';
import { mergeSampleLists } from '../../evidence.js';

const QUERY = loadSql(import.meta.url, 'query.sql');

interface Row {
  client: string;
  server: string;
  server_port: number;
  ip_proto: number;
  connections: number;
  longest_ms: number;
  first_ms: number;
  last_ms: number;
  joined_records: number;
  total_up_bytes: number;
  total_down_bytes: number;
  total_up_packets: number;
  total_down_packets: number;
  client_ports: number[];
  started_before: number;
  client_is_internal: number;
  server_is_internal: number;
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  rate: number;
  exporters: string[];
}

const HOUR = 3_600;

const params = z
  .strictObject({
    /** Duration (seconds) from which one connection is long: RITA's first tier above its 1-hour base, 4 h. */
    minDurationSeconds: z
      .number()
      .int()
      .min(60)
      .default(4 * HOUR),
    /** Durations at which severity rises to medium and high (RITA's 8 h and 12 h tiers). */
    mediumDurationSeconds: z
      .number()
      .int()
      .min(60)
      .default(8 * HOUR),
    highDurationSeconds: z
      .number()
      .int()
      .min(60)
      .default(12 * HOUR),
    /** Silence (seconds) after which a record of the same 5-tuple opens a new connection (UDP; TCP needs a SYN too). */
    joinGapSeconds: z.number().min(0).max(3_600).default(60),
    /** Also report connections between two internal hosts (database, backup and cluster sessions last for days). */
    includeInternal: z.boolean().default(false),
  })
  .refine(
    (p) =>
      p.minDurationSeconds <= p.mediumDurationSeconds && p.mediumDurationSeconds <= p.highDurationSeconds,
    {
      message: 'minDurationSeconds ≤ mediumDurationSeconds ≤ highDurationSeconds',
    },
  );

const PROTOCOLS: Record<number, string> = { 6: 'TCP', 17: 'UDP' };

const hours = (ms: number): string => `${(ms / 3_600_000).toFixed(1)} h`;

/**
 * Long connections (ATT&CK T1071 Application Layer Protocol, T1572 Protocol Tunneling): one connection
 * kept open for hours, which flows show only once its active-timeout records are joined again. Tiers
 * after RITA (long connections: 4, 8 and 12 h); Slips flags connections over 1500 s, far too many for a
 * SOC on its own. A flow cannot tell a tunnel from an application's own long session, so findings carry
 * both techniques.
 */
export const longConnection = defineDetector({
  id: 'long-connection',
  title: 'Long connection',
  description:
    'One TCP or UDP connection between an internal and an external host that lasts for hours, measured across the records the exporter split it into by active timeout (records of one 5-tuple joined). Ongoing connections are reported as soon as they cross the minimum and extended while they last.',
  techniques: ['T1071', 'T1572'],
  severity: 'low',
  intervalSeconds: HOUR,
  lookbackSeconds: 24 * HOUR,
  cooldownSeconds: 3 * HOUR,
  falsePositives: [
    'VPN clients and site-to-site tunnels (IPsec, OpenVPN, WireGuard)',
    'push and messaging channels kept open all day (Apple push 5223, Google FCM 5228, chat and collaboration websockets on 443)',
    'remote administration (SSH, RDP) and streaming sessions',
    'with includeInternal: database, replication, backup and cluster connections',
  ],
  params,
  async run(ctx) {
    const p = ctx.params;
    const rows = await ctx.query<Row>(QUERY, {
      min_duration_ms: p.minDurationSeconds * 1000,
      join_gap_ms: Math.round(p.joinGapSeconds * 1000),
      include_internal: p.includeInternal ? 1 : 0,
    });
    return rows.map((r) => {
      const seconds = Math.round(r.longest_ms / 1000);
      const severity: Severity =
        seconds >= p.highDurationSeconds ? 'high' : seconds >= p.mediumDurationSeconds ? 'medium' : 'low';
      const proto = PROTOCOLS[r.ip_proto] ?? String(r.ip_proto);
      const inbound = Number(r.client_is_internal) === 0;
      return {
        key: [r.client, r.server, r.ip_proto, r.server_port],
        title: `Long ${proto} connection ${r.client} → ${r.server}:${r.server_port}: ${Number(r.started_before) ? '≥ ' : ''}${hours(r.longest_ms)}${inbound ? ' (from the Internet)' : ''}`,
        severity,
        confidence: severity === 'high' ? 0.7 : severity === 'medium' ? 0.5 : 0.3,
        srcIp: r.client,
        dstIp: r.server,
        firstSeen: Number(r.first_ms),
        lastSeen: Number(r.last_ms),
        flows: r.new_flows,
        bytes: r.new_bytes,
        packets: r.new_packets,
        exporters: r.exporters,
        evidence: {
          duration_seconds: seconds,
          started_before_context: Number(r.started_before) === 1,
          long_connections: r.connections,
          records_joined: r.joined_records,
          protocol: proto,
          server_port: r.server_port,
          client_ports: r.client_ports,
          bytes_client_to_server: r.total_up_bytes,
          bytes_server_to_client: r.total_down_bytes,
          packets_client_to_server: r.total_up_packets,
          packets_server_to_client: r.total_down_packets,
          client_internal: !inbound,
          server_internal: Number(r.server_is_internal) === 1,
          sampling_rate: Math.max(1, Number(r.rate)),
          threshold_seconds: p.minDurationSeconds,
          medium_seconds: p.mediumDurationSeconds,
          high_seconds: p.highDurationSeconds,
          lookback_seconds: (ctx.window.to - ctx.window.contextFrom) / 1000,
        },
      };
    });
  },
  mergeEvidence(previous, next) {
    // A connection older than the lookback is measured from the context's start: keep the longest seen.
    return {
      ...next,
      duration_seconds: Math.max(Number(previous.duration_seconds ?? 0), Number(next.duration_seconds ?? 0)),
      client_ports: mergeSampleLists(previous.client_ports, next.client_ports, 10),
    };
  },
});
