import { z } from 'zod';
import type { Severity } from '../../../findings/model.js';
import { defineDetector, loadSql } from '../../detector.js';
import { mergeSampleLists } from '../../evidence.js';

const QUERY = loadSql(import.meta.url, 'query.sql');

interface Row {
  client: string;
  server: string;
  server_port: number;
  connections: number;
  longest_ms: number;
  first_ms: number;
  last_ms: number;
  total_up_bytes: number;
  total_down_bytes: number;
  total_up_packets: number;
  total_down_packets: number;
  client_ports: number[];
  orientations: string[];
  odd_port_servers: number;
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  client_rate: number;
  exporters: string[];
}

/**
 * TCP ports where a common service lives, so that a session there is not "non-standard". Web and its
 * alternates, mail, file transfer, remote access, directory, VPN, messaging and push, conferencing,
 * databases that cloud services expose on their own ports. Extend it with the site's own services.
 */
export const DEFAULT_ALLOWED_PORTS: readonly number[] = [
  20, 21, 22, 23, 25, 43, 53, 80, 88, 110, 119, 123, 135, 139, 143, 389, 443, 445, 465, 563, 587, 636, 853,
  873, 989, 990, 993, 995, 1194, 1433, 1521, 1723, 1883, 1935, 2195, 2196, 2197, 3268, 3269, 3306, 3389, 3478,
  3479, 4070, 5060, 5061, 5222, 5223, 5228, 5229, 5230, 5349, 5432, 5671, 5672, 5900, 5938, 6379, 6443, 7680,
  8000, 8008, 8080, 8443, 8801, 8802, 8883, 9418,
];

const MIN = 60;

const params = z.strictObject({
  /** Server ports that are not reported (a known service runs there). */
  allowedPorts: z
    .array(z.number().int().min(1).max(65_535))
    .max(10_000)
    .default([...DEFAULT_ALLOWED_PORTS]),
  /** Skip server ports ≥ 49152 (IANA dynamic range: P2P and ephemeral listeners). */
  ignoreDynamicPorts: z.boolean().default(true),
  /** A session counts when it lasted this long (seconds) ... */
  minDurationSeconds: z
    .number()
    .int()
    .min(1)
    .default(10 * MIN),
  /** ... and carried this many bytes, both directions together ... */
  minBytes: z.number().int().min(0).default(20_000),
  /** ... or, whatever its duration, moved this many bytes. */
  bulkBytes: z.number().int().min(1).default(10_000_000),
  /**
   * A client talking to this many external servers on non-standard ports in the lookback is a P2P,
   * game or conferencing client: skipped. Divided by the sampling rate down to p2pServersSampled.
   */
  p2pServers: z.number().int().min(2).default(10),
  p2pServersSampled: z.number().int().min(2).default(3),
  /** Silence (seconds) after which a record of the same 5-tuple opens a new connection (with a new SYN). */
  joinGapSeconds: z.number().min(0).max(3_600).default(60),
  /** Mean packet size (bytes, IP) under which a session in both directions looks interactive (shell-like). */
  interactiveMaxPacketBytes: z.number().int().min(40).default(200),
});

/**
 * Non-standard port (ATT&CK T1571): an internal host's substantial TCP session (lasting, carrying data,
 * or bulk) with an external server on a port where no common service lives, whose opening we saw. Ports
 * alone are noise (Elastic deprecated its port-only rules; Slips' unknown-port alerts flooded its users),
 * hence the conservative defaults and the exclusions described in query.sql.
 */
export const nonStandardPort = defineDetector({
  id: 'non-standard-port',
  title: 'Session on a non-standard port',
  description:
    'An internal host opens a TCP session to an external server on a port outside the known-service list (and below the dynamic range), and the session lasts (10 min, 20 kB) or moves bulk data (10 MB). Only sessions whose handshake or biflow record shows who opened them count; passive FTP data, UDP media and P2P clients (many servers on odd ports) are skipped. Flows carry no payload: the finding says that something substantial ran on an unusual port, not which protocol.',
  techniques: ['T1571'],
  severity: 'low',
  intervalSeconds: 900,
  lookbackSeconds: 6 * 3_600,
  cooldownSeconds: 6 * 3_600,
  falsePositives: [
    'vendor services on their own ports not in allowedPorts (game launchers, backup and sync agents, licence servers, IoT clouds): add the port, or allowlist the destination',
    'sites that serve HTTP(S) on an odd port (admin panels, appliances)',
    'developers reaching test servers on arbitrary ports',
  ],
  params,
  async run(ctx) {
    const p = ctx.params;
    const rows = await ctx.query<Row>(QUERY, {
      allowed_ports: p.allowedPorts,
      ignore_dynamic: p.ignoreDynamicPorts ? 1 : 0,
      min_duration_ms: p.minDurationSeconds * 1000,
      min_bytes: p.minBytes,
      bulk_bytes: p.bulkBytes,
      p2p_servers: p.p2pServers,
      p2p_servers_floor: p.p2pServersSampled,
      join_gap_ms: Math.round(p.joinGapSeconds * 1000),
    });
    return rows.map((r) => {
      const total = Number(r.total_up_bytes) + Number(r.total_down_bytes);
      const upMean = r.total_up_packets > 0 ? Number(r.total_up_bytes) / r.total_up_packets : 0;
      const downMean = r.total_down_packets > 0 ? Number(r.total_down_bytes) / r.total_down_packets : 0;
      const bulk = total >= p.bulkBytes;
      const interactive =
        !bulk &&
        r.total_up_packets + r.total_down_packets >= 50 &&
        upMean <= p.interactiveMaxPacketBytes &&
        downMean <= p.interactiveMaxPacketBytes;
      const shape = bulk ? 'bulk' : interactive ? 'interactive' : 'long-session';
      // Shell-like or bulk traffic on an odd port is what reverse shells and exfiltration look like.
      const severity: Severity = shape === 'long-session' ? 'low' : 'medium';
      const minutes = Math.round(r.longest_ms / 60_000);
      const size =
        total >= 1_000_000 ? `${(total / 1_000_000).toFixed(1)} MB` : `${Math.round(total / 1000)} kB`;
      return {
        key: [r.client, r.server, r.server_port],
        title: `TCP session on non-standard port ${r.server_port}: ${r.client} → ${r.server}, ${minutes} min, ${size} (${shape})`,
        severity,
        confidence: shape === 'long-session' ? 0.4 : 0.6,
        techniqueIds: ['T1571'],
        srcIp: r.client,
        dstIp: r.server,
        firstSeen: Number(r.first_ms),
        lastSeen: Number(r.last_ms),
        flows: r.new_flows,
        bytes: r.new_bytes,
        packets: r.new_packets,
        exporters: r.exporters,
        evidence: {
          server_port: r.server_port,
          shape,
          sessions: r.connections,
          longest_seconds: Math.round(r.longest_ms / 1000),
          bytes_client_to_server: r.total_up_bytes,
          bytes_server_to_client: r.total_down_bytes,
          packets_client_to_server: r.total_up_packets,
          packets_server_to_client: r.total_down_packets,
          mean_packet_bytes_client_to_server: Math.round(upMean),
          mean_packet_bytes_server_to_client: Math.round(downMean),
          client_ports: r.client_ports,
          client_told_by: r.orientations,
          client_odd_port_servers: r.odd_port_servers,
          sampling_rate: Math.max(1, Number(r.client_rate)),
          threshold_duration_seconds: p.minDurationSeconds,
          threshold_bytes: p.minBytes,
          threshold_bulk_bytes: p.bulkBytes,
          threshold_p2p_servers: p.p2pServers,
          allowed_ports: p.allowedPorts.length,
        },
      };
    });
  },
  mergeEvidence(previous, next) {
    return {
      ...next,
      longest_seconds: Math.max(Number(previous.longest_seconds ?? 0), Number(next.longest_seconds ?? 0)),
      client_ports: mergeSampleLists(previous.client_ports, next.client_ports, 10),
    };
  },
});
