import { z } from 'zod';
import { isValidCidr } from '../../../common/ip.js';
import type { Severity } from '../../../findings/model.js';
import type { TechniqueId } from '../../attack.js';
import { defineDetector, loadSql } from '../../detector.js';
import { mergeSampleLists } from '../../evidence.js';
import { AddressSet, displayAddress } from '../../networks.js';

const QUERY = loadSql(import.meta.url, 'query.sql');

interface Row {
  client: string;
  resolver: string;
  resolver_internal: number;
  queries: number;
  query_bytes: number;
  bytes_out: number;
  bytes_in: number;
  packets_in: number;
  span_seconds: number;
  queries_per_minute: number;
  bytes_out_per_minute: number;
  avg_request_bytes: number;
  rate_hit: number | boolean;
  volume_hit: number | boolean;
  size_hit: number | boolean;
  ports: number[];
  protocols: number[];
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  first_seen: string;
  last_seen: string;
  rate: number;
  exporters: string[];
}

const cidr = z
  .string()
  .refine(isValidCidr, { message: 'expected a CIDR such as 10.0.0.53/32 or 2001:db8::/32' });

const params = z.strictObject({
  /**
   * Resolvers clients are meant to use (the internal resolvers, a contracted DNS service): their
   * clients are not judged. Empty: no resolver is sanctioned and DNS to any resolver counts. The
   * internal resolvers' own upstream traffic is judged like any client's; put their addresses on this
   * detector's source allowlist, or sanction the upstream they forward to.
   */
  sanctionedResolvers: z.array(cidr).max(1_000).default([]),
  /** DNS ports: 53 (UDP and TCP), 853 (DNS over TLS, RFC 7858; DNS over QUIC, RFC 9250). */
  ports: z.array(z.number().int().min(1).max(65_535)).min(1).max(16).default([53, 853]),
  /** UDP requests per minute from one client to one resolver (Sigma: 1000). */
  maxQueriesPerMinute: z.number().min(1).default(1_000),
  /** Bytes per minute from one client to one resolver (Sigma: 300 kB). */
  maxBytesPerMinute: z.number().min(1).default(300_000),
  /** Average bytes per UDP request datagram (IP and UDP headers included) from which requests count as large. */
  largeRequestBytes: z.number().min(1).default(150),
  /** Requests in the lookback before their average size is judged (a few long names are normal). */
  minLargeRequests: z.number().int().min(1).default(300),
});

function formatBytes(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${Math.round(n)} B`;
}

const truthy = (v: number | boolean) => v === true || Number(v) === 1;
const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

/**
 * DNS tunnelling by volume (ATT&CK T1071.004 Application Layer Protocol: DNS; T1048.003 Exfiltration
 * Over Unencrypted Non-C2 Protocol when the data goes out in the requests). Thresholds after Sigma's
 * "High DNS Bytes Out" and "High DNS Requests Rate" network rules, plus a request-size signal for
 * tunnels slower than those rates.
 */
export const dnsTunnelling = defineDetector({
  id: 'dns-tunnelling',
  title: 'DNS tunnelling by volume',
  description:
    'An internal client sends a tunnel-like volume of DNS to one resolver that is not sanctioned: more than 1000 UDP requests or 300 kB a minute, or hundreds of requests whose average size betrays data packed into the query names. UDP and TCP 53 and port 853 (DoT/DoQ: bytes only) are covered.',
  techniques: ['T1071.004', 'T1048.003'],
  severity: 'medium',
  intervalSeconds: 60,
  lookbackSeconds: 300,
  cooldownSeconds: 1_800,
  falsePositives: [
    "an internal resolver's upstream traffic (allowlist its address as a source, or sanction the upstream it forwards to)",
    'mail servers and proxies resolving at high rates (small requests: only the rate signal can fire)',
    'security products whose reputation lookups carry hashes in long query names (McAfee GTI, Sophos, DNSBLs)',
    'DNS-based service discovery or monitoring probing one server intensively',
  ],
  params,
  async run(ctx) {
    const p = ctx.params;
    const sanctioned = new AddressSet(p.sanctionedResolvers);
    const rows = await ctx.query<Row>(QUERY, {
      ports: p.ports,
      sanctioned_lo: sanctioned.lo,
      sanctioned_hi: sanctioned.hi,
      max_queries_per_minute: p.maxQueriesPerMinute,
      max_bytes_per_minute: p.maxBytesPerMinute,
      large_request_bytes: p.largeRequestBytes,
      min_large_requests: p.minLargeRequests,
    });
    return rows.map((r) => {
      const qpm = Number(r.queries_per_minute);
      const bpm = Number(r.bytes_out_per_minute);
      const avg = Number(r.avg_request_bytes);
      const signals: string[] = [];
      if (truthy(r.rate_hit)) signals.push('request rate');
      if (truthy(r.volume_hit)) signals.push('bytes out');
      if (truthy(r.size_hit)) signals.push('large requests');
      signals.sort();
      // Severity rises when signals agree, or one is far beyond its threshold.
      const far =
        qpm > 3 * p.maxQueriesPerMinute ||
        bpm > 3 * p.maxBytesPerMinute ||
        (truthy(r.size_hit) && avg >= 1.5 * p.largeRequestBytes);
      const severity: Severity = signals.length >= 2 || far ? 'high' : 'medium';
      // Data leaving in the requests (bytes or large names) is exfiltration as well as a channel.
      const upstream = truthy(r.volume_hit) || truthy(r.size_hit);
      const techniqueIds: TechniqueId[] = upstream ? ['T1071.004', 'T1048.003'] : ['T1071.004'];
      const internalResolver = Number(r.resolver_internal) === 1;
      const client = displayAddress(r.client) ?? r.client;
      const resolver = displayAddress(r.resolver) ?? r.resolver;
      const measured = [
        `${Math.round(qpm)} requests/min`,
        `${formatBytes(bpm)}/min out`,
        ...(Number(r.queries) > 0 ? [`${Math.round(avg)} B per request`] : []),
      ].join(', ');
      return {
        key: [r.client, r.resolver],
        title: `DNS tunnelling suspected from ${client} to ${internalResolver ? 'unsanctioned internal' : 'external'} resolver ${resolver}: ${measured}`,
        severity,
        confidence: Math.min(0.95, 0.5 + 0.15 * signals.length + (far ? 0.1 : 0)),
        techniqueIds,
        srcIp: r.client,
        dstIp: r.resolver,
        firstSeen: r.first_seen,
        lastSeen: r.last_seen,
        flows: Number(r.new_flows),
        bytes: Number(r.new_bytes),
        packets: Number(r.new_packets),
        exporters: r.exporters,
        evidence: {
          signals,
          requests: Number(r.queries),
          requests_per_minute: round(qpm),
          bytes_out: Number(r.bytes_out),
          bytes_out_per_minute: Math.round(bpm),
          bytes_in: Number(r.bytes_in),
          avg_request_bytes: round(avg),
          avg_response_bytes:
            Number(r.packets_in) > 0 ? round(Number(r.bytes_in) / Number(r.packets_in)) : null,
          span_seconds: round(Number(r.span_seconds)),
          ports: r.ports,
          protocols: r.protocols,
          resolver_internal: internalResolver,
          sanctioned_resolvers: p.sanctionedResolvers.length,
          sampling_rate: Math.max(1, Number(r.rate)),
          lookback_seconds: (ctx.window.to - ctx.window.contextFrom) / 1000,
          thresholds: {
            requests_per_minute: p.maxQueriesPerMinute,
            bytes_out_per_minute: p.maxBytesPerMinute,
            large_request_bytes: p.largeRequestBytes,
            min_large_requests: p.minLargeRequests,
          },
        },
      };
    });
  },
  mergeEvidence(previous, next) {
    const num = (v: unknown) => (typeof v === 'number' ? v : 0);
    return {
      ...next,
      signals: mergeSampleLists(previous.signals, next.signals, 3),
      peak_requests_per_minute: Math.max(
        num(previous.peak_requests_per_minute),
        num(previous.requests_per_minute),
        num(next.requests_per_minute),
      ),
      peak_bytes_out_per_minute: Math.max(
        num(previous.peak_bytes_out_per_minute),
        num(previous.bytes_out_per_minute),
        num(next.bytes_out_per_minute),
      ),
    };
  },
});
