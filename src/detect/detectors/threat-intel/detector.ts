import { z } from 'zod';
import type { Severity } from '../../../findings/model.js';
import type { TechniqueId } from '../../attack.js';
import { defineDetector, loadSql, type Observation } from '../../detector.js';
import { mergeSampleLists } from '../../evidence.js';
import { displayAddress } from '../../networks.js';
import type { IndicatorMatch } from '../../threat-intel.js';

const ADDRESSES = loadSql(import.meta.url, 'query.sql');
const EVIDENCE = loadSql(import.meta.url, 'evidence.sql');

interface AddressRow {
  address: string;
}

interface EvidenceRow {
  internal: string;
  external: string;
  internal_initiated: number | boolean;
  connections: number;
  established: number;
  bytes_out: number;
  bytes_in: number;
  packets_out: number;
  packets_in: number;
  service_ports: number[];
  protocols: number[];
  new_flows: number;
  new_bytes: number;
  new_packets: number;
  first_seen: string;
  last_seen: string;
  rate: number;
  exporters: string[];
}

const port = z.number().int().min(1).max(65_535);

const params = z.strictObject({
  /** Bytes (both ways) from which an established exchange counts as heavy (RITA adds to a threat-intel hit from 25 MB). */
  heavyBytes: z.number().int().min(1).default(25_000_000),
  /**
   * Report inbound attempts from listed sources that were not answered (blocked or refused). Off by
   * default: listed scanners reach every public address all day long.
   */
  reportInboundAttempts: z.boolean().default(false),
  /** Services whose inbound use from a listed source is T1133 External Remote Services (others: T1190). */
  remoteAccessPorts: z.array(port).max(64).default([22, 23, 500, 1194, 1723, 3389, 4500, 5900, 5985, 5986]),
  /** Distinct external addresses matched per run; beyond it the rest is skipped and a warning logged. */
  maxAddresses: z.number().int().min(1_000).max(5_000_000).default(500_000),
});

type Params = z.infer<typeof params>;

const SEVERITIES: readonly Severity[] = ['low', 'medium', 'high', 'critical'];
const raise = (s: Severity): Severity => SEVERITIES[Math.min(3, SEVERITIES.indexOf(s) + 1)]!;

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${Math.round(n)} B`;
}

interface Group {
  match: IndicatorMatch;
  internalInitiated: boolean;
  rows: EvidenceRow[];
}

function sum(rows: readonly EvidenceRow[], f: (r: EvidenceRow) => number): number {
  return rows.reduce((s, r) => s + Number(f(r)), 0);
}

/**
 * Traffic with addresses on indicator lists (FLOWSENTRY_THREAT_INTEL). Outbound contact with a
 * malicious address: T1071 Application Layer Protocol (command and control); with a Tor relay:
 * T1090.003 Multi-hop Proxy. Inbound connections from a listed source are context for initial
 * access: T1133 External Remote Services on remote-access ports, T1190 Exploit Public-Facing
 * Application otherwise (plus T1090.003 when the source is Tor). Mining-pool lists are left to the
 * crypto-mining detector. Elastic's indicator-match rules run hourly with indicators of the last 30
 * days; list hygiene (expiry, sinkholes, CDNs) is the feed's job, and the evidence names the list.
 */
export const threatIntel = defineDetector({
  id: 'threat-intel',
  title: 'Threat-intel match',
  description:
    'Flows between internal hosts and addresses on the indicator lists (IPs and CIDRs; categories malicious and tor). Established exchanges rank above blocked or unanswered attempts, heavy ones higher still; unanswered inbound attempts are not reported by default.',
  techniques: ['T1071', 'T1090.003', 'T1190', 'T1133'],
  severity: 'high',
  intervalSeconds: 300,
  lookbackSeconds: 300,
  cooldownSeconds: 3_600,
  falsePositives: [
    'stale or overly broad indicators: shared hosting, CDN and cloud addresses, sinkholes, public resolvers listed by mistake',
    'Tor used by policy (browsers of researchers), or Tor exit relays visiting a public website',
    'security tools that deliberately contact listed infrastructure (sandboxes, threat-hunting crawlers)',
  ],
  params,
  async run(ctx) {
    const p: Params = ctx.params;
    if (ctx.threatIntel.size === 0) return [];
    const addresses = await ctx.query<AddressRow>(ADDRESSES, { max_addresses: p.maxAddresses });
    if (addresses.length >= p.maxAddresses) {
      ctx.log.warn(
        { addresses: addresses.length, limit: p.maxAddresses },
        'threat-intel: more distinct external addresses than maxAddresses; the rest were not matched',
      );
    }
    const matches = new Map<string, IndicatorMatch>();
    for (const { address } of addresses) {
      const m = ctx.threatIntel.lookup(address);
      // Mining pools belong to the crypto-mining detector (same lists, its own technique).
      if (m && m.category !== 'mining') matches.set(address, m);
    }
    if (matches.size === 0) return [];
    const rows = await ctx.query<EvidenceRow>(EVIDENCE, { addresses: [...matches.keys()] });

    // Outbound: one finding per (internal host, listed address). Inbound: one per listed source, its
    // internal targets as related addresses.
    const groups = new Map<string, Group>();
    for (const r of rows) {
      const match = matches.get(r.external) ?? ctx.threatIntel.lookup(r.external);
      if (!match) continue;
      const internalInitiated = r.internal_initiated === true || Number(r.internal_initiated) === 1;
      const key = internalInitiated ? `out|${r.internal}|${r.external}` : `in|${r.external}`;
      const g = groups.get(key) ?? { match, internalInitiated, rows: [] };
      g.rows.push(r);
      groups.set(key, g);
    }

    const remote = new Set(p.remoteAccessPorts);
    const observations: Observation[] = [];
    for (const { match, internalInitiated, rows: list } of groups.values()) {
      const external = list[0]!.external;
      const connections = sum(list, (r) => r.connections);
      const established = sum(list, (r) => r.established);
      const bytesOut = sum(list, (r) => r.bytes_out);
      const bytesIn = sum(list, (r) => r.bytes_in);
      const volume = bytesOut + bytesIn;
      const heavy = volume >= p.heavyBytes;
      const ports = [...new Set(list.flatMap((r) => r.service_ports))].sort((a, b) => a - b).slice(0, 10);
      const tor = match.category === 'tor';
      // The busiest target first (ties by address, so that the primary entity is stable).
      const targets = [...list].sort(
        (a, b) =>
          Number(b.bytes_out) + Number(b.bytes_in) - (Number(a.bytes_out) + Number(a.bytes_in)) ||
          a.internal.localeCompare(b.internal),
      );
      const top = targets[0]!;

      let severity: Severity;
      let techniqueIds: TechniqueId[];
      let what: string;
      if (internalInitiated) {
        techniqueIds = tor ? ['T1090.003'] : ['T1071'];
        if (established === 0) severity = 'low';
        else if (tor) severity = heavy ? 'high' : 'medium';
        else severity = heavy ? 'critical' : 'high';
        what = tor ? 'Connection to Tor relay' : 'Contact with listed address';
      } else {
        if (established === 0 && !p.reportInboundAttempts) continue;
        const remoteAccess = ports.some((x) => remote.has(x));
        techniqueIds = [remoteAccess ? 'T1133' : 'T1190'];
        if (tor) techniqueIds.push('T1090.003');
        if (established === 0) severity = 'low';
        else if (tor) severity = remoteAccess ? 'medium' : 'low';
        else severity = 'medium';
        if (established > 0 && heavy) severity = raise(severity);
        what = tor ? 'Inbound from Tor relay' : 'Inbound from listed address';
      }

      const internal = displayAddress(top.internal) ?? top.internal;
      const ext = displayAddress(external) ?? external;
      const state =
        established > 0
          ? `${established} established, ${formatBytes(volume)}`
          : `${connections} attempts, none answered`;
      const title = internalInitiated
        ? `${what}: ${internal} → ${ext} (${match.list}${match.note ? `: ${match.note}` : ''}), ${state}`
        : `${what} ${ext} (${match.list}${match.note ? `: ${match.note}` : ''}) to ${list.length > 1 ? `${list.length} internal hosts` : internal}, ${state}`;
      const firstSeen = list.map((r) => r.first_seen).sort()[0]!;
      const lastSeen = list
        .map((r) => r.last_seen)
        .sort()
        .at(-1)!;
      observations.push({
        key: internalInitiated ? ['out', top.internal, external] : ['in', external],
        title,
        severity,
        confidence: tor ? 0.9 : established > 0 ? 0.8 : 0.6,
        techniqueIds,
        srcIp: internalInitiated ? top.internal : external,
        dstIp: internalInitiated ? external : top.internal,
        relatedIps: internalInitiated ? [] : targets.slice(1, 50).map((r) => r.internal),
        firstSeen,
        lastSeen,
        flows: sum(list, (r) => r.new_flows),
        bytes: sum(list, (r) => r.new_bytes),
        packets: sum(list, (r) => r.new_packets),
        exporters: [...new Set(list.flatMap((r) => r.exporters))].slice(0, 8),
        evidence: {
          indicator: match.indicator,
          list: match.list,
          category: match.category,
          note: match.note,
          direction: internalInitiated ? 'outbound' : 'inbound',
          connections,
          established,
          attempts: connections - established,
          bytes_out: bytesOut,
          bytes_in: bytesIn,
          packets_out: sum(list, (r) => r.packets_out),
          packets_in: sum(list, (r) => r.packets_in),
          service_ports: ports,
          protocols: [...new Set(list.flatMap((r) => r.protocols))].sort((a, b) => a - b),
          internal_hosts: list.length,
          internal_sample: targets.slice(0, 10).map((r) => displayAddress(r.internal) ?? r.internal),
          sampling_rate: Math.max(1, ...list.map((r) => Number(r.rate))),
          thresholds: { heavy_bytes: p.heavyBytes, report_inbound_attempts: p.reportInboundAttempts },
        },
      });
    }
    return observations;
  },
  mergeEvidence(previous, next) {
    return {
      ...next,
      service_ports: mergeSampleLists(previous.service_ports, next.service_ports, 10),
      internal_sample: mergeSampleLists(previous.internal_sample, next.internal_sample, 10),
    };
  },
});
