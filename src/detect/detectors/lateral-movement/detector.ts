import { z } from 'zod';
import type { Severity } from '../../../findings/model.js';
import type { TechniqueId } from '../../attack.js';
import { defineDetector, loadSql } from '../../detector.js';
import { mergeSampleLists } from '../../evidence.js';
import { displayAddress } from '../../networks.js';

const QUERY = loadSql(import.meta.url, 'query.sql');

interface Row {
  src: string;
  new_hosts: number;
  /** [service number, new hosts] */
  service_stats: Array<[number, number]>;
  hosts_sample: string[];
  /** [dst, bytes uploaded] */
  transfers: Array<[string, number]>;
  known_edges: number;
  connections: number;
  bytes_up: number;
  bytes_down: number;
  ports: number[];
  first_seen: string;
  last_seen: string;
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  rate: number;
  threshold: number;
  exporters: string[];
}

const TECHNIQUES = ['T1021', 'T1021.001', 'T1021.002', 'T1021.004', 'T1021.006'] as const;

const service = z.strictObject({
  name: z.string().min(1).max(40),
  ports: z.array(z.number().int().min(1).max(65_535)).min(1).max(16),
  technique: z.enum(TECHNIQUES),
  /** Uploads over it count as lateral tool transfer (T1570): SMB admin shares (C$, ADMIN$). */
  transfers: z.boolean().default(false),
});

/**
 * Admin protocols and their ATT&CK Remote Services sub-techniques. RPC's endpoint mapper (135) is where
 * DCOM, remote WMI and remote task or service management begin; flows cannot tell which, so it maps to
 * the parent technique.
 */
const DEFAULT_SERVICES: Array<z.input<typeof service>> = [
  { name: 'SMB', ports: [445], technique: 'T1021.002', transfers: true },
  { name: 'RDP', ports: [3389], technique: 'T1021.001' },
  { name: 'WinRM', ports: [5985, 5986], technique: 'T1021.006' },
  { name: 'SSH', ports: [22], technique: 'T1021.004' },
  { name: 'RPC', ports: [135], technique: 'T1021' },
];

const params = z
  .strictObject({
    /**
     * New internal destinations on admin protocols within the lookback (Elastic's hunt for excessive
     * RDP connections by host counts 10 distinct destinations; its ML job flags spikes of them).
     */
    minNewHosts: z.number().int().min(2).max(1_000_000).default(10),
    /** Lower bound of the threshold once divided by the sampling rate. */
    minNewHostsSampled: z.number().int().min(2).max(1_000_000).default(3),
    /**
     * Days of flows before the context whose edges are not new (0: every edge is new). The read is
     * limited to sources with enough destinations and to the admin ports.
     */
    baselineDays: z.number().min(0).max(30).default(7),
    /** Least bytes (both directions, scaled) of a connection that counts: more than a bare connect. */
    minConnectionBytes: z.number().int().min(0).max(1_000_000_000).default(2_000),
    /** Bytes uploaded to one host over a transfer service that count as a tool transfer. */
    transferBytes: z.number().int().min(1).max(1_000_000_000_000).default(250_000),
    /** Hosts receiving such uploads for T1570 (one copy is a file, several are a deployment). */
    minTransferHosts: z.number().int().min(1).max(1_000_000).default(3),
    services: z
      .array(service)
      .min(1)
      .max(32)
      .default(DEFAULT_SERVICES as Array<z.infer<typeof service>>),
  })
  .refine(
    (p) => {
      const ports = p.services.flatMap((s) => s.ports);
      return new Set(ports).size === ports.length;
    },
    { message: 'a port may belong to one service only', path: ['services'] },
  );

/**
 * Lateral movement fan-out (ATT&CK T1021 Remote Services and its sub-techniques per protocol; T1570
 * Lateral Tool Transfer when SMB uploads of tool size reach several hosts). New edges are those absent
 * from a baseline of earlier flows, the "first time seen" heuristic of RITA and Elastic's rare-
 * destination jobs; fan-in (a server contacted by many) never counts.
 */
export const lateralMovement = defineDetector({
  id: 'lateral-movement',
  title: 'Lateral movement fan-out',
  description:
    'One internal host completes admin-protocol connections (SMB, RDP, WinRM, SSH, RPC) to many internal hosts it did not reach that way in the baseline days before; SMB uploads of tool size to several of them are reported as lateral tool transfer.',
  techniques: ['T1021', 'T1021.001', 'T1021.002', 'T1021.004', 'T1021.006', 'T1570'],
  severity: 'medium',
  intervalSeconds: 300,
  lookbackSeconds: 3_600,
  cooldownSeconds: 3_600,
  falsePositives: [
    'patch management, backup, inventory and monitoring servers reaching new hosts (new machines, a first run, a baseline shorter than their cycle): allowlist them',
    'an administrator working through a list of servers',
    'the first days after deployment, when the baseline is empty (evidence: known_edges = 0)',
    'deployment tools pushing software over SMB (also T1570-shaped)',
  ],
  params,
  async run(ctx) {
    const p = ctx.params;
    const ports: number[] = [];
    const index: number[] = [];
    const smbPorts: number[] = [];
    p.services.forEach((s, i) => {
      for (const port of s.ports) {
        ports.push(port);
        index.push(i);
        if (s.transfers) smbPorts.push(port);
      }
    });
    const rows = await ctx.query<Row>(QUERY, {
      svc_ports: ports,
      svc_index: index,
      smb_ports: smbPorts,
      min_connection_bytes: p.minConnectionBytes,
      baseline_ms: Math.round(p.baselineDays * 86_400_000),
      min_new_hosts: p.minNewHosts,
      min_new_hosts_sampled: p.minNewHostsSampled,
      transfer_bytes: p.transferBytes,
    });
    return rows.map((r) => {
      const services = r.service_stats
        .map(([i, hosts]) => ({
          service: p.services[i]?.name ?? String(i),
          technique: p.services[i]?.technique,
          new_hosts: hosts,
        }))
        .sort((a, b) => b.new_hosts - a.new_hosts);
      // The protocols the fan-out used: the main one, and any other reaching two new hosts or more.
      const techniques = new Set<TechniqueId>();
      services.forEach((s, i) => {
        if (s.technique && (i === 0 || s.new_hosts >= 2)) techniques.add(s.technique);
      });
      const transfer = r.transfers.length >= p.minTransferHosts;
      if (transfer) techniques.add('T1570');
      const wide = r.new_hosts >= 3 * r.threshold;
      const severity: Severity = transfer || wide ? 'high' : 'medium';
      const src = displayAddress(r.src);
      const named = services
        .filter((s) => s.new_hosts >= 2 || s === services[0])
        .map((s) => s.service)
        .join(', ');
      return {
        key: [r.src],
        title: `Lateral movement from ${src}: ${named} to ${r.new_hosts} new internal hosts${transfer ? `, files of tool size copied to ${r.transfers.length}` : ''}`,
        severity,
        confidence: Math.min(
          1,
          0.5 +
            (Number(r.known_edges) > 0 ? 0.15 : 0) +
            (transfer ? 0.2 : 0) +
            r.new_hosts / (10 * r.threshold),
        ),
        techniqueIds: [...techniques],
        srcIp: r.src,
        dstIp: null,
        relatedIps: r.hosts_sample,
        firstSeen: r.first_seen,
        lastSeen: r.last_seen,
        flows: r.new_flows,
        bytes: r.new_bytes,
        packets: r.new_packets,
        exporters: r.exporters,
        evidence: {
          new_hosts: r.new_hosts,
          per_service: services.map(({ service: name, new_hosts }) => ({ service: name, new_hosts })),
          ports: r.ports,
          hosts_sample: r.hosts_sample.map((a) => displayAddress(a)),
          transfers: r.transfers.map(([dst, bytes]) => ({ dst: displayAddress(dst), bytes })),
          connections: r.connections,
          bytes_up: r.bytes_up,
          bytes_down: r.bytes_down,
          known_edges: Number(r.known_edges),
          baseline_days: p.baselineDays,
          threshold_hosts: r.threshold,
          transfer_bytes: p.transferBytes,
          min_transfer_hosts: p.minTransferHosts,
          min_connection_bytes: p.minConnectionBytes,
          sampling_rate: r.rate,
          lookback_seconds: (ctx.window.to - ctx.window.contextFrom) / 1000,
        },
      };
    });
  },
  mergeEvidence(previous, next) {
    return {
      ...next,
      new_hosts: Math.max(Number(previous.new_hosts ?? 0), Number(next.new_hosts ?? 0)),
      ports: mergeSampleLists(previous.ports, next.ports, 16),
      hosts_sample: mergeSampleLists(previous.hosts_sample, next.hosts_sample, 50),
    };
  },
});
