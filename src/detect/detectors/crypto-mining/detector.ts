import { z } from 'zod';
import { isValidCidr } from '../../../common/ip.js';
import type { Severity } from '../../../findings/model.js';
import { defineDetector, loadSql } from '../../detector.js';
import { mergeSampleLists } from '../../evidence.js';
import { AddressSet, displayAddress } from '../../networks.js';
import type { IndicatorMatch } from '../../threat-intel.js';

const DESTINATIONS = loadSql(import.meta.url, 'destinations.sql');
const QUERY = loadSql(import.meta.url, 'query.sql');

interface Row {
  client: string;
  server: string;
  server_port: number;
  listed: number;
  connections: number;
  two_way: number;
  longest_seconds: number;
  total_seconds: number;
  bytes_up: number;
  bytes_down: number;
  packets_up: number;
  packets_down: number;
  bytes_per_minute: number;
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  first_seen: string;
  last_seen: string;
  rate: number;
  exporters: string[];
}

const cidr = z.string().refine(isValidCidr, { message: 'expected a CIDR such as 203.0.113.0/24' });

const params = z.strictObject({
  /** Stratum ports commonly used by pools and miners (xmrig, NiceHash); port-only matches need the behaviour below too. */
  ports: z
    .array(z.number().int().min(1).max(65_535))
    .max(64)
    .default([3333, 4444, 5555, 7777, 8888, 9999, 14444, 45560, 45700]),
  /** Pool address ranges known locally (in addition to threat-intel lists of category mining). */
  pools: z.array(cidr).max(10_000).default([]),
  /** A port-only candidate's longest connection must last this long (a miner keeps its session for hours). */
  minDurationSeconds: z.number().min(1).default(600),
  /** ... and carry at most this much per minute, both ways (stratum jobs and shares are a few kB a minute). */
  maxBytesPerMinute: z.number().min(1).default(60_000),
  /** External destinations matched against the lists per run. */
  maxAddresses: z.number().int().min(1_000).max(5_000_000).default(500_000),
});

type Params = z.infer<typeof params>;

function formatBytes(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${Math.round(n)} B`;
}

function formatDuration(seconds: number): string {
  if (seconds >= 3600) return `${(seconds / 3600).toFixed(1)} h`;
  if (seconds >= 60) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds)} s`;
}

/**
 * Crypto-mining pool traffic (ATT&CK T1496.001 Resource Hijacking: Compute Hijacking, ATT&CK v16).
 * Pools are known from threat-intel lists of category mining (ntopng's nocoin lists are of this
 * kind), from configured ranges, or by the stratum session's shape on a stratum port: long-lived,
 * two-way, low-volume. Sigma's pool-domain rules need DNS names, which flows do not carry.
 */
export const cryptoMining = defineDetector({
  id: 'crypto-mining',
  title: 'Crypto-mining pool traffic',
  description:
    'Internal hosts connected to mining pools: a destination on a mining indicator list or in the configured pool ranges (any port), or a long-lived, two-way, low-volume TCP session on a stratum port. A port match alone is never enough.',
  techniques: ['T1496.001'],
  severity: 'high',
  intervalSeconds: 300,
  lookbackSeconds: 3_600,
  cooldownSeconds: 3_600,
  falsePositives: [
    'long-lived low-volume sessions on a stratum port that are something else: a notebook server (Jupyter on 8888), an admin console or message broker on 9999/5555 (port-only findings are medium)',
    'sanctioned mining or blockchain research hosts (allowlist them)',
    'pool lists that include shared hosting or proxy addresses',
  ],
  params,
  async run(ctx) {
    const p: Params = ctx.params;
    const pools = new AddressSet(p.pools);
    const listed = new Map<string, IndicatorMatch>();
    if (ctx.threatIntel.size > 0) {
      const rows = await ctx.query<{ address: string }>(DESTINATIONS, { max_addresses: p.maxAddresses });
      if (rows.length >= p.maxAddresses)
        ctx.log.warn({ limit: p.maxAddresses }, 'crypto-mining: more destinations than maxAddresses');
      for (const { address } of rows) {
        const m = ctx.threatIntel.lookup(address);
        if (m?.category === 'mining') listed.set(address, m);
      }
    }
    const rows = await ctx.query<Row>(QUERY, {
      ports: p.ports,
      pool_lo: pools.lo,
      pool_hi: pools.hi,
      listed: [...listed.keys()],
      min_duration_seconds: p.minDurationSeconds,
      max_bytes_per_minute: p.maxBytesPerMinute,
    });
    return rows.map((r) => {
      const intel = listed.get(r.server) ?? null;
      const onList = Number(r.listed) === 1;
      const twoWay = Number(r.two_way) > 0;
      const longest = Number(r.longest_seconds);
      const bpm = Number(r.bytes_per_minute);
      let severity: Severity;
      let confidence: number;
      let reason: string;
      if (onList) {
        const source = intel ? `indicator list ${intel.list}` : 'configured pool range';
        severity = twoWay ? 'high' : 'low';
        confidence = twoWay ? 0.9 : 0.6;
        reason = twoWay ? `pool on ${source}` : `pool on ${source}, connection attempts only`;
      } else {
        severity = 'medium';
        confidence = 0.6;
        reason = 'stratum port with a long-lived, two-way, low-volume session';
      }
      const client = displayAddress(r.client) ?? r.client;
      const server = displayAddress(r.server) ?? r.server;
      const shape = twoWay
        ? `${Number(r.connections)} connection${Number(r.connections) === 1 ? '' : 's'}, longest ${formatDuration(longest)}, ${formatBytes(bpm)}/min`
        : `${Number(r.connections)} unanswered attempt${Number(r.connections) === 1 ? '' : 's'}`;
      return {
        key: [r.client, r.server],
        title: `Crypto-mining pool traffic from ${client} to ${server}:${r.server_port}${intel ? ` (${intel.list})` : ''}: ${shape}`,
        severity,
        confidence,
        techniqueIds: ['T1496.001'],
        srcIp: r.client,
        dstIp: r.server,
        firstSeen: r.first_seen,
        lastSeen: r.last_seen,
        flows: Number(r.new_flows),
        bytes: Number(r.new_bytes),
        packets: Number(r.new_packets),
        exporters: r.exporters,
        evidence: {
          reason,
          indicator: intel ? { indicator: intel.indicator, list: intel.list, note: intel.note } : null,
          configured_pool: onList && !intel,
          server_ports: [Number(r.server_port)],
          stratum_port: p.ports.includes(Number(r.server_port)),
          connections: Number(r.connections),
          two_way_connections: Number(r.two_way),
          longest_seconds: Math.round(longest),
          total_seconds: Math.round(Number(r.total_seconds)),
          bytes_up: Number(r.bytes_up),
          bytes_down: Number(r.bytes_down),
          packets_up: Number(r.packets_up),
          packets_down: Number(r.packets_down),
          bytes_per_minute: Math.round(bpm),
          sampling_rate: Math.max(1, Number(r.rate)),
          lookback_seconds: (ctx.window.to - ctx.window.contextFrom) / 1000,
          thresholds: {
            min_duration_seconds: p.minDurationSeconds,
            max_bytes_per_minute: p.maxBytesPerMinute,
          },
        },
      };
    });
  },
  mergeEvidence(previous, next) {
    const num = (v: unknown) => (typeof v === 'number' ? v : 0);
    return {
      ...next,
      server_ports: mergeSampleLists(previous.server_ports, next.server_ports, 10),
      longest_seconds: Math.max(num(previous.longest_seconds), num(next.longest_seconds)),
    };
  },
});
