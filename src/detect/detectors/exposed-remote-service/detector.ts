import { z } from 'zod';
import { SEVERITIES } from '../../../findings/model.js';
import type { TechniqueId } from '../../attack.js';
import { defineDetector, loadSql } from '../../detector.js';
import { mergeSampleLists } from '../../evidence.js';
import { displayAddress } from '../../networks.js';

const QUERY = loadSql(import.meta.url, 'query.sql');

interface Row {
  dst: string;
  svc: number;
  ports: number[];
  sources: number;
  /** [src, connections, bytes] */
  source_stats: Array<[string, number, number]>;
  top_source: string;
  connections: number;
  bytes_to_server: number;
  bytes_from_server: number;
  longest_seconds: number;
  first_seen: string;
  last_seen: string;
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  rate: number;
  exporters: string[];
}

/** The Remote Services sub-technique a service's use maps to, besides T1133. */
const REMOTE_SERVICE = ['T1021.001', 'T1021.002', 'T1021.004', 'T1021.005', 'T1021.006'] as const;

const service = z.strictObject({
  name: z.string().min(1).max(40),
  ports: z.array(z.number().int().min(1).max(65_535)).min(1).max(16),
  severity: z.enum(SEVERITIES),
  /** T1021 sub-technique of the protocol, if it has one (Telnet has none). */
  technique: z.enum(REMOTE_SERVICE).optional(),
});

/**
 * Severity by what exposure means: SMB and Telnet reached from the Internet are almost never intended
 * (SMB is what worms spread over; Telnet sends passwords in the clear); RDP, VNC and WinRM give a
 * desktop or a shell and are the usual initial-access targets (Elastic's "RDP from the Internet" is
 * medium); SSH is commonly exposed on purpose, with key authentication.
 */
const DEFAULT_SERVICES: Array<z.infer<typeof service>> = [
  { name: 'RDP', ports: [3389], severity: 'medium', technique: 'T1021.001' },
  { name: 'SMB', ports: [445, 139], severity: 'high', technique: 'T1021.002' },
  { name: 'SSH', ports: [22], severity: 'low', technique: 'T1021.004' },
  { name: 'VNC', ports: [5900, 5901], severity: 'medium', technique: 'T1021.005' },
  { name: 'WinRM', ports: [5985, 5986], severity: 'medium', technique: 'T1021.006' },
  { name: 'Telnet', ports: [23], severity: 'high' },
];

const params = z
  .strictObject({
    /**
     * Least bytes (both directions, scaled) of a connection that counts: a handshake with its close is
     * about 400 bytes, a refused or banner-only connection under 800; any login exchange is more.
     */
    minBytes: z.number().int().min(0).max(1_000_000_000).default(1_000),
    services: z.array(service).min(1).max(64).default(DEFAULT_SERVICES),
  })
  .refine(
    (p) => {
      const ports = p.services.flatMap((s) => s.ports);
      return new Set(ports).size === ports.length;
    },
    { message: 'a port may belong to one service only', path: ['services'] },
  );

/**
 * Remote-access service reached from the Internet (ATT&CK T1133 External Remote Services, with the
 * protocol's T1021 sub-technique, as Elastic's "RDP (Remote Desktop Protocol) from the Internet" maps
 * to Remote Services). One finding per internal server and service, naming the Internet sources whose
 * connections completed and carried data.
 */
export const exposedRemoteService = defineDetector({
  id: 'exposed-remote-service',
  title: 'Remote-access service reached from the Internet',
  description:
    'An internal host accepts connections from outside the internal networks on a remote-access service (RDP, SMB, SSH, VNC, WinRM, Telnet): the handshake completed and data went both ways. Refused or unanswered attempts (scans) do not count.',
  techniques: ['T1133', 'T1021.001', 'T1021.002', 'T1021.004', 'T1021.005', 'T1021.006'],
  severity: 'medium',
  intervalSeconds: 300,
  lookbackSeconds: 3_600,
  cooldownSeconds: 86_400,
  falsePositives: [
    'bastions, jump hosts and RDP gateways exposed on purpose (allowlist them as destinations)',
    'cloud instances administered over SSH or RDP from the Internet',
    'vendor remote support on VNC or RDP',
    'addresses outside FLOWSENTRY_INTERNAL_NETWORKS that are really internal (VPN pools, public ranges used inside): add them',
  ],
  params,
  async run(ctx) {
    const ports: number[] = [];
    const index: number[] = [];
    ctx.params.services.forEach((s, i) => {
      for (const port of s.ports) {
        ports.push(port);
        index.push(i);
      }
    });
    const rows = await ctx.query<Row>(QUERY, {
      svc_ports: ports,
      svc_index: index,
      min_bytes: ctx.params.minBytes,
    });
    const out = [];
    for (const r of rows) {
      const svc = ctx.params.services[r.svc];
      if (!svc) continue;
      const techniques: TechniqueId[] = svc.technique ? ['T1133', svc.technique] : ['T1133'];
      const sources = r.source_stats.map(([src, connections, bytes]) => ({
        src: displayAddress(src),
        connections,
        bytes,
      }));
      const named = sources
        .slice(0, 3)
        .map((s) => s.src)
        .join(', ');
      out.push({
        key: [r.dst, svc.name],
        title: `${svc.name} on ${displayAddress(r.dst)} reached from the Internet: ${r.connections} connection${r.connections === 1 ? '' : 's'} from ${r.sources === 1 ? named : `${r.sources} sources (${named}${r.sources > 3 ? ', ...' : ''})`}`,
        severity: svc.severity,
        // Completed, data-carrying connections from outside: the exposure itself is near certain.
        confidence: r.rate > 1 ? 0.7 : 0.9,
        techniqueIds: techniques,
        srcIp: r.top_source,
        dstIp: r.dst,
        relatedIps: r.source_stats.map(([src]) => src),
        firstSeen: r.first_seen,
        lastSeen: r.last_seen,
        flows: r.new_flows,
        bytes: r.new_bytes,
        packets: r.new_packets,
        exporters: r.exporters,
        evidence: {
          service: svc.name,
          ports: r.ports,
          distinct_sources: r.sources,
          sources,
          connections: r.connections,
          bytes_to_server: r.bytes_to_server,
          bytes_from_server: r.bytes_from_server,
          longest_connection_seconds: Math.round(r.longest_seconds * 10) / 10,
          min_connection_bytes: ctx.params.minBytes,
          sampling_rate: r.rate,
          lookback_seconds: (ctx.window.to - ctx.window.contextFrom) / 1000,
        },
      });
    }
    return out;
  },
  mergeEvidence(previous, next) {
    const bySource = new Map<string, { src: string; connections: number; bytes: number }>();
    for (const list of [previous.sources, next.sources]) {
      if (!Array.isArray(list)) continue;
      for (const s of list as Array<{ src: string; connections: number; bytes: number }>) {
        const seen = bySource.get(s.src);
        // Windows overlap (each reads the lookback): keep the larger view of a source, do not add.
        if (!seen || s.bytes > seen.bytes) bySource.set(s.src, s);
      }
    }
    const sources = [...bySource.values()].sort((a, b) => b.bytes - a.bytes).slice(0, 20);
    return {
      ...next,
      ports: mergeSampleLists(previous.ports, next.ports, 16),
      distinct_sources: Math.max(
        Number(previous.distinct_sources ?? 0),
        Number(next.distinct_sources ?? 0),
        sources.length,
      ),
      sources,
      longest_connection_seconds: Math.max(
        Number(previous.longest_connection_seconds ?? 0),
        Number(next.longest_connection_seconds ?? 0),
      ),
    };
  },
});
