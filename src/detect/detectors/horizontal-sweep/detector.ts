import { z } from 'zod';
import type { Severity } from '../../../findings/model.js';
import type { TechniqueId } from '../../attack.js';
import { defineDetector, loadSql } from '../../detector.js';
import { mergeSampleLists } from '../../evidence.js';
import { displayAddress } from '../../networks.js';

const QUERY = loadSql(import.meta.url, 'query.sql');

interface Row {
  src: string;
  kind: 'tcp' | 'icmp';
  src_is_internal: number;
  ports: number;
  /** [port, hosts probed, hosts that answered] */
  port_stats: Array<[number, number, number]>;
  max_hosts: number;
  hosts_sample: string[];
  answered_sample: string[];
  probes: number;
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  first_seen: string;
  last_seen: string;
  rate: number;
  threshold: number;
  exporters: string[];
}

const params = z.strictObject({
  /**
   * Distinct destinations probed on one port within the lookback by an external source (Zeek's
   * scan.zeek: 25 hosts in 5 minutes; bro-simple-scan also uses 25 for remote scanners).
   */
  minHosts: z.number().int().min(2).max(1_000_000).default(25),
  /**
   * The same for an internal source. bro-simple-scan uses 250 for local scanners, Elastic raised its
   * sweep rule from 10 to 100 hosts; internal failed attempts are rarer than the Internet's background
   * noise, so the default stays at Zeek's 25 (raise it, or allowlist the inventory scanner, if noisy).
   */
  minHostsInternal: z.number().int().min(2).max(1_000_000).default(25),
  /** Lower bound of a threshold once divided by the sampling rate. */
  minHostsSampled: z.number().int().min(2).max(1_000_000).default(5),
  /** Destinations at which a sweep counts as wide (severity rises): a whole /24 and more. */
  wideHosts: z.number().int().min(2).max(1_000_000).default(250),
  /**
   * ICMP: average echo requests per destination within the lookback above which the source is a
   * monitor re-polling its hosts, not a sweep (fping retries a silent host 3 times: 4 requests).
   */
  maxEchoPerHost: z.number().min(1).max(1_000).default(4),
});

/**
 * Horizontal sweep (ATT&CK T1046 Network Service Discovery for TCP, T1018 Remote System Discovery for
 * ping sweeps, T1595.001 Active Scanning: Scanning IP Blocks when the source is outside the internal
 * networks). One finding per source and protocol, listing the ports swept; thresholds after Zeek's
 * scan.zeek (address scan: 25 hosts on one port in 5 minutes).
 */
export const horizontalSweep = defineDetector({
  id: 'horizontal-sweep',
  title: 'Horizontal sweep',
  description:
    'One source sends TCP SYNs that never complete a handshake to one port (or a few) of many destinations, or pings many destinations (ICMP/ICMPv6 echo). Destinations that answered (SYN-ACK, echo reply) are listed.',
  techniques: ['T1046', 'T1018', 'T1595.001'],
  severity: 'medium',
  intervalSeconds: 60,
  lookbackSeconds: 300,
  cooldownSeconds: 3_600,
  falsePositives: [
    'vulnerability scanners, asset inventory and network discovery tools (allowlist their addresses)',
    'a monitoring system whose targets are down (an outage): its checks fail like probes',
    'a monitor that pings each host only once or twice per lookback (allowlist it)',
    'peer-to-peer clients trying many stale peers on one port',
  ],
  params,
  async run(ctx) {
    const rows = await ctx.query<Row>(QUERY, {
      min_hosts: ctx.params.minHosts,
      min_hosts_internal: ctx.params.minHostsInternal,
      min_hosts_sampled: ctx.params.minHostsSampled,
      max_echo_per_host: ctx.params.maxEchoPerHost,
    });
    return rows.map((r) => {
      const internal = Number(r.src_is_internal) === 1;
      const icmp = r.kind === 'icmp';
      const wide = r.max_hosts >= ctx.params.wideHosts;
      const severity: Severity = internal ? (wide ? 'high' : 'medium') : wide ? 'medium' : 'low';
      const technique: TechniqueId = !internal ? 'T1595.001' : icmp ? 'T1018' : 'T1046';
      const portList = r.port_stats.map((p) => p[0]);
      const answered = r.port_stats[0]?.[2] ?? 0;
      const what = icmp
        ? `${r.max_hosts} hosts pinged (${answered} answered)`
        : `${portList.length === 1 ? `port ${portList[0]}` : `ports ${portList.slice(0, 5).join(', ')}${portList.length > 5 ? ', ...' : ''}`} probed on ${r.max_hosts} hosts`;
      return {
        key: [r.src, r.kind],
        title: `${internal ? (icmp ? 'Ping sweep' : 'TCP sweep') : icmp ? 'External ping sweep' : 'External TCP sweep'} by ${displayAddress(r.src)}: ${what}`,
        severity,
        confidence: Math.min(1, 0.5 + r.max_hosts / (4 * Math.max(1, r.threshold))),
        techniqueIds: [technique],
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
          protocol: r.kind,
          distinct_hosts: r.max_hosts,
          ports_swept: r.ports,
          ports: icmp ? [] : portList,
          per_port: r.port_stats.map(([port, hosts, answers]) => ({ port, hosts, answered: answers })),
          hosts_sample: r.hosts_sample.map((a) => displayAddress(a)),
          answered_sample: r.answered_sample.map((a) => displayAddress(a)),
          probes: r.probes,
          scanner_internal: internal,
          sampling_rate: r.rate,
          threshold_hosts: r.threshold,
          ...(icmp ? { max_echo_per_host: ctx.params.maxEchoPerHost } : {}),
          lookback_seconds: (ctx.window.to - ctx.window.contextFrom) / 1000,
        },
      };
    });
  },
  mergeEvidence(previous, next) {
    return {
      ...next,
      distinct_hosts: Math.max(Number(previous.distinct_hosts ?? 0), Number(next.distinct_hosts ?? 0)),
      ports: mergeSampleLists(previous.ports, next.ports, 50),
      hosts_sample: mergeSampleLists(previous.hosts_sample, next.hosts_sample, 50),
      answered_sample: mergeSampleLists(previous.answered_sample, next.answered_sample, 20),
    };
  },
});
