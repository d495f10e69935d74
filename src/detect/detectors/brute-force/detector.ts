import { z } from 'zod';
import type { Severity } from '../../../findings/model.js';
import { defineDetector, loadSql } from '../../detector.js';
import { mergeSampleLists } from '../../evidence.js';
import { displayAddress } from '../../networks.js';

const QUERY = loadSql(import.meta.url, 'query.sql');

interface Row {
  src: string;
  svc: number;
  src_is_internal: number;
  attempts: number;
  hosts: number;
  host_stats: Array<[string, number]>;
  top_host: string;
  top_host_attempts: number;
  mean_attempt_bytes: number;
  size_cv: number;
  /** [server, start, bytes, seconds] */
  sessions: Array<[string, string, number, number]>;
  first_attempt: string;
  last_attempt: string;
  first_seen: string;
  last_seen: string;
  ports: number[];
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  rate: number;
  threshold: number;
  exporters: string[];
}

const service = z.strictObject({
  name: z.string().min(1).max(40),
  ports: z.array(z.number().int().min(1).max(65_535)).min(1).max(16),
  /**
   * Least payload the client sends in one login attempt (bytes, estimated from IP bytes minus headers):
   * below it a connection is a banner grab or a connect scan, not an attempt.
   */
  minClientBytes: z.number().int().min(0).max(1_000_000),
  /** Connections larger than this (both directions) are sessions, i.e. likely successful logins. */
  successBytes: z.number().int().min(100).max(1_000_000_000),
});

/**
 * The login services watched. Login payload floors follow from the protocols: an SSH client sends its
 * version and KEXINIT (about a kilobyte) before any password; RDP a TLS ClientHello and CredSSP; SMB a
 * negotiate and two session setups; FTP, Telnet, VNC and Redis logins are a few dozen bytes. Success
 * sizes: SSH after Slips (a flow of more than 4290 bytes is a successful login); the others are
 * heuristics well above one failed exchange and below what a logged-in session moves.
 */
const DEFAULT_SERVICES: Array<z.infer<typeof service>> = [
  { name: 'SSH', ports: [22], minClientBytes: 600, successBytes: 4_290 },
  { name: 'RDP', ports: [3389], minClientBytes: 300, successBytes: 50_000 },
  { name: 'FTP', ports: [21], minClientBytes: 1, successBytes: 3_000 },
  { name: 'Telnet', ports: [23], minClientBytes: 1, successBytes: 5_000 },
  { name: 'SMB', ports: [445], minClientBytes: 300, successBytes: 20_000 },
  { name: 'WinRM', ports: [5985, 5986], minClientBytes: 200, successBytes: 20_000 },
  { name: 'VNC', ports: [5900], minClientBytes: 1, successBytes: 20_000 },
  { name: 'MSSQL', ports: [1433], minClientBytes: 200, successBytes: 10_000 },
  { name: 'MySQL', ports: [3306], minClientBytes: 50, successBytes: 10_000 },
  { name: 'PostgreSQL', ports: [5432], minClientBytes: 40, successBytes: 10_000 },
  { name: 'Oracle', ports: [1521], minClientBytes: 100, successBytes: 10_000 },
  { name: 'MongoDB', ports: [27017], minClientBytes: 100, successBytes: 10_000 },
  { name: 'Redis', ports: [6379], minClientBytes: 1, successBytes: 5_000 },
];

const params = z
  .strictObject({
    /**
     * Login attempts from one source to one service within the lookback. Zeek counts 30 failed SSH
     * logins in 30 minutes; flows cannot tell a failed login from a successful one, and a health check
     * once a minute already makes 30 small connections in 30 minutes, so the default sits above that
     * (Sycope alerts above 50 connections).
     */
    minAttempts: z.number().int().min(2).max(1_000_000).default(40),
    /** Lower bound of the threshold once divided by the sampling rate. */
    minAttemptsSampled: z.number().int().min(2).max(1_000_000).default(5),
    /** Destinations at which the attempts count as spraying (T1110.003) rather than guessing. */
    sprayMinHosts: z.number().int().min(2).max(1_000_000).default(10),
    /**
     * Spraying: least mean attempts per destination. One connection per host is what a connect scan
     * or a banner-grabbing crawler makes; a login tool tries a few passwords on each.
     */
    sprayMinPerHost: z.number().min(1).max(1_000).default(2),
    /** Attempt sizes whose stddev / mean is at most this are "uniform": a tool repeating one exchange. */
    maxSizeVariation: z.number().min(0).max(10).default(0.3),
    services: z.array(service).min(1).max(64).default(DEFAULT_SERVICES),
  })
  .refine(
    (p) => {
      const ports = p.services.flatMap((s) => s.ports);
      return new Set(ports).size === ports.length;
    },
    { message: 'a port may belong to one service only', path: ['services'] },
  );

type Params = z.infer<typeof params>;

/** The query's per-port arrays (service number, payload floor, success size), from the services. */
function serviceArrays(p: Params) {
  const ports: number[] = [];
  const index: number[] = [];
  const minPayload: number[] = [];
  const success: number[] = [];
  p.services.forEach((s, i) => {
    for (const port of s.ports) {
      ports.push(port);
      index.push(i);
      minPayload.push(s.minClientBytes);
      success.push(s.successBytes);
    }
  });
  return { svc_ports: ports, svc_index: index, svc_min_payload: minPayload, svc_success_bytes: success };
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

/**
 * Brute force (ATT&CK T1110.001 Password Guessing on one host or a few, T1110.003 Password Spraying
 * across many). Counts completed, login-sized connections per source and service, after Zeek's
 * detect-bruteforcing.zeek (SSH: 30 failures in 30 minutes; FTP: 20 in 15) and Sycope (more than 50
 * connections); a larger session after the attempts marks a likely successful login (Slips).
 */
export const bruteForce = defineDetector({
  id: 'brute-force',
  title: 'Brute force',
  description:
    'One source opens many short, completed connections to a login service (SSH, RDP, FTP, Telnet, SMB, WinRM, VNC, MSSQL, MySQL, PostgreSQL, Oracle, MongoDB, Redis) of one host (guessing) or many hosts (spraying). A larger session to an attempted host afterwards is reported as a likely successful login.',
  techniques: ['T1110.001', 'T1110.003'],
  severity: 'medium',
  intervalSeconds: 300,
  lookbackSeconds: 1_800,
  cooldownSeconds: 3_600,
  falsePositives: [
    'bastions and configuration management (Ansible, Salt SSH) opening many small sessions: allowlist the bastion',
    'health checks logging in more often than once a minute (database pools, load balancers)',
    'a user or application retrying with a stale password',
    'vulnerability scanners testing default credentials (allowlist them)',
  ],
  params,
  async run(ctx) {
    const p = ctx.params;
    const rows = await ctx.query<Row>(QUERY, {
      ...serviceArrays(p),
      min_attempts: p.minAttempts,
      min_attempts_sampled: p.minAttemptsSampled,
    });
    const out = [];
    for (const r of rows) {
      const spraying = r.hosts >= p.sprayMinHosts;
      // Many hosts with about one connection each: a sweep or a banner crawler, not a login tool.
      if (spraying && r.attempts < r.hosts * p.sprayMinPerHost) continue;
      const svc = p.services[r.svc];
      if (!svc) continue;
      const internal = Number(r.src_is_internal) === 1;
      const uniform = r.attempts >= 3 && r.size_cv <= p.maxSizeVariation;
      const sessions = r.sessions.map(([server, start, bytes, seconds]) => ({
        dst: displayAddress(server),
        start: new Date(
          Date.parse(`${start.replace(' ', 'T')}${/[zZ]$/.test(start) ? '' : 'Z'}`),
        ).toISOString(),
        bytes,
        seconds: round(seconds, 1),
      }));
      const success = sessions.length > 0;
      const severity: Severity = success ? 'high' : 'medium';
      const src = displayAddress(r.src);
      const what = spraying
        ? `${svc.name} password spraying by ${src}: ${r.attempts} attempts on ${r.hosts} hosts`
        : `${svc.name} password guessing against ${displayAddress(r.top_host)} by ${src}: ${r.attempts} attempts${r.hosts > 1 ? ` on ${r.hosts} hosts` : ''}`;
      out.push({
        key: [r.src, svc.name],
        title: success
          ? `${what}, then a ${sessions[0]!.bytes}-byte session (likely successful login)`
          : what,
        severity,
        confidence: Math.min(
          1,
          0.5 + (uniform ? 0.2 : 0) + (success ? 0.1 : 0) + Math.min(0.2, r.attempts / (10 * r.threshold)),
        ),
        techniqueIds: [spraying ? ('T1110.003' as const) : ('T1110.001' as const)],
        srcIp: r.src,
        dstIp: spraying ? null : r.top_host,
        relatedIps: r.host_stats.map(([server]) => server),
        firstSeen: r.first_seen,
        lastSeen: r.last_seen,
        flows: r.new_flows,
        bytes: r.new_bytes,
        packets: r.new_packets,
        exporters: r.exporters,
        evidence: {
          service: svc.name,
          ports: r.ports,
          attempts: r.attempts,
          distinct_hosts: r.hosts,
          per_host: r.host_stats.map(([server, attempts]) => ({ dst: displayAddress(server), attempts })),
          mean_attempt_bytes: Math.round(r.mean_attempt_bytes),
          size_cv: round(r.size_cv),
          uniform_sizes: uniform,
          likely_success: success,
          success_sessions: sessions,
          first_attempt: r.first_attempt,
          last_attempt: r.last_attempt,
          attacker_internal: internal,
          sampling_rate: r.rate,
          threshold_attempts: r.threshold,
          spray_min_hosts: p.sprayMinHosts,
          spray_min_per_host: p.sprayMinPerHost,
          max_size_variation: p.maxSizeVariation,
          min_client_bytes: svc.minClientBytes,
          success_bytes: svc.successBytes,
          lookback_seconds: (ctx.window.to - ctx.window.contextFrom) / 1000,
        },
      });
    }
    return out;
  },
  mergeEvidence(previous, next) {
    const sessions = [
      ...(Array.isArray(previous.success_sessions) ? previous.success_sessions : []),
      ...(Array.isArray(next.success_sessions) ? next.success_sessions : []),
    ] as Array<{ dst: string; start: string }>;
    const seen = new Set<string>();
    const unique = sessions.filter((s) => {
      const k = `${s.dst}|${s.start}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
    return {
      ...next,
      attempts: Math.max(Number(previous.attempts ?? 0), Number(next.attempts ?? 0)),
      distinct_hosts: Math.max(Number(previous.distinct_hosts ?? 0), Number(next.distinct_hosts ?? 0)),
      ports: mergeSampleLists(previous.ports, next.ports, 16),
      likely_success: previous.likely_success === true || next.likely_success === true,
      success_sessions: unique.slice(0, 5),
      first_attempt: previous.first_attempt ?? next.first_attempt,
    };
  },
});
