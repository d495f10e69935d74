/**
 * Synthetic flows for the query benchmark, generated inside ClickHouse with `INSERT INTO flows SELECT
 * ... FROM numbers(start, count)` so that tens of millions of rows never pass through JavaScript. Every
 * random choice is a hash of the row number, so the same row count gives the same table.
 *
 * The shape aims at an enterprise edge rather than uniform noise:
 * - about 20,000 internal hosts (10.0.1.1 to 10.0.80.250, 250 per /24) with a power-law activity, a few
 *   hundred internal servers (10.0.200.0/23), two resolvers (10.0.0.53/54) and a DMZ (10.0.250.0/24);
 * - about 200,000 external addresses with Zipf(1) popularity (log-uniform index), so a handful of
 *   services get most flows; the most popular thousand sit in 20 hyperscaler ASes, the rest in ~1,000;
 * - a weighted service mix (HTTPS, QUIC, DNS, NTP, SSH, RDP, SMB, AD, databases, VPN, ICMP) with
 *   ephemeral client ports, both directions of most conversations as uniflow exporters send them, 1-3 %
 *   failed TCP attempts and a trickle of Internet background scanning;
 * - Pareto-tailed packet counts and per-service packet sizes, flows ending 1-60 s before they are
 *   received, and a diurnal rate that peaks at 14:00 UTC (three times the 02:00 trough);
 * - six exporters: four NetFlow v9 routers (one tagging VLANs), one IPFIX router and one IPFIX biflow
 *   firewall (reverse counters, firewall events) in front of the DMZ.
 * A vertical scan and a horizontal sweep are injected in 13:00-13:05 and a 3.4 GB upload in 14:00-15:00,
 * so the detector queries have something to find.
 */

/** Where a service's client and server sit (numbers, because the SQL compares them). */
const Scope = {
  /** Internal client, external server. */
  Outbound: 0,
  /** Internal client, internal server (10.0.200.0/23). */
  Internal: 1,
  /** External client, DMZ server (10.0.250.0/24). */
  Inbound: 2,
  /** Internal client, internal resolver. */
  Resolver: 3,
  /** Resolver forwarding to external servers. */
  Forwarder: 4,
  /** Internet background scanning of any internal host (mostly failed). */
  Noise: 5,
} as const;
type Scope = (typeof Scope)[keyof typeof Scope];

interface Service {
  readonly proto: 1 | 6 | 17;
  readonly port: number;
  readonly scope: Scope;
  /** Share of flows, in per mille. */
  readonly weight: number;
  /** Pareto scale of the packet count; 0 for one-packet transactions (DNS, NTP). */
  readonly packets: number;
  /** Bytes per packet client→server and server→client: [min, span]. */
  readonly fwd: readonly [number, number];
  readonly rev: readonly [number, number];
  /** Share of failed attempts (TCP only). */
  readonly fail: number;
  /** Part of the clients use IPv6 (web services only). */
  readonly v6: boolean;
}

const svc = (
  proto: Service['proto'],
  port: number,
  scope: Scope,
  weight: number,
  packets: number,
  fwd: readonly [number, number],
  rev: readonly [number, number],
  fail = 0,
  v6 = false,
): Service => ({ proto, port, scope, weight, packets, fwd, rev, fail, v6 });

const WEB_FWD = [52, 300] as const;
const WEB_REV = [600, 860] as const;

export const SERVICES: readonly Service[] = [
  svc(6, 443, Scope.Outbound, 330, 4, WEB_FWD, WEB_REV, 0.01, true),
  svc(6, 443, Scope.Inbound, 30, 4, WEB_FWD, WEB_REV, 0.02, true),
  svc(6, 443, Scope.Internal, 28, 4, WEB_FWD, WEB_REV, 0.01),
  svc(6, 80, Scope.Outbound, 50, 3, [52, 400], [500, 960], 0.02, true),
  svc(17, 443, Scope.Outbound, 60, 4, [60, 1200], [1000, 250], 0, true),
  svc(17, 53, Scope.Resolver, 110, 0, [60, 40], [90, 300]),
  svc(17, 53, Scope.Forwarder, 50, 0, [60, 40], [90, 300]),
  svc(17, 123, Scope.Outbound, 25, 0, [76, 0], [76, 0]),
  svc(6, 22, Scope.Internal, 25, 8, [80, 300], [80, 600], 0.03),
  svc(6, 22, Scope.Inbound, 10, 6, [80, 300], [80, 600], 0.5),
  svc(6, 3389, Scope.Internal, 20, 10, [80, 600], [200, 1200], 0.02),
  svc(6, 445, Scope.Internal, 40, 6, [100, 1300], [100, 1300], 0.03),
  svc(6, 88, Scope.Internal, 15, 3, [100, 1200], [100, 1300], 0.01),
  svc(6, 389, Scope.Internal, 15, 3, [100, 400], [100, 1300], 0.01),
  svc(6, 135, Scope.Internal, 15, 3, [80, 200], [80, 300], 0.02),
  svc(6, 993, Scope.Outbound, 15, 5, [60, 300], [300, 1100], 0.01),
  svc(6, 587, Scope.Outbound, 5, 5, [300, 1100], [60, 100], 0.02),
  svc(1, 0, Scope.Outbound, 15, 2, [84, 0], [84, 0]),
  svc(1, 0, Scope.Internal, 10, 2, [84, 0], [84, 0]),
  ...[8080, 8443, 5432, 3306, 9200, 6443].map((port) =>
    svc(6, port, Scope.Internal, 10, 5, [80, 700], [200, 1200], 0.02),
  ),
  ...[500, 4500, 51820, 3478, 5060].map((port) =>
    svc(17, port, Scope.Outbound, 8, 6, [100, 1100], [100, 1100]),
  ),
  ...[23, 2323, 8080, 5555, 6379, 1433, 5900, 81, 8443, 22, 3389, 445, 9200, 8888, 37215, 52869].map((port) =>
    svc(6, port, Scope.Noise, 2, 1, [60, 0], [40, 0], 0.95),
  ),
];

/** 20 hyperscaler/CDN ASes that the most popular external addresses belong to. */
const BIG_ASES = [
  13335, 15169, 16509, 8075, 32934, 20940, 54113, 2906, 14618, 36459, 46489, 19551, 714, 6185, 396982, 8068,
  16625, 13414, 24940, 63949,
];

/** Which exporter (1-based) routes each internal /24, cycling: site routers 1-4 (v9) and 5 (IPFIX). */
const SITE_EXPORTER = [1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 5];

/** Columns of `flows` in insertion order. */
export const FLOW_COLUMNS = [
  'time_received',
  'flow_start',
  'flow_end',
  'exporter_address',
  'version',
  'observation_domain_id',
  'in_if',
  'out_if',
  'src_addr',
  'dst_addr',
  'src_port',
  'dst_port',
  'proto',
  'tcp_flags',
  'tos',
  'bytes',
  'packets',
  'sampling_rate',
  'src_as',
  'dst_as',
  'src_mask',
  'dst_mask',
  'next_hop',
  'direction',
  'icmp_type',
  'icmp_code',
  'src_vlan',
  'dst_vlan',
  'end_reason',
  'firewall_event',
  'reverse_bytes',
  'reverse_packets',
] as const;
type Column = (typeof FLOW_COLUMNS)[number];

/** Diurnal shape: the rate peaks at PEAK_HOUR and is (1 + A) / (1 - A) times the trough. */
const A = 0.5;
const PEAK_HOUR = 14;

/**
 * Seconds into the day of the row at fraction `u` of the day's rows. The derivative of this map is
 * 1 − A·cos(2π(u − φ)), so rows are densest at u = φ; it is monotonic (A < 1), so rows stay in time order.
 */
export function dayOffsetSeconds(u: number): number {
  const phi = PEAK_HOUR / 24;
  return Math.floor(
    86_400 * (u - (A * (Math.sin(2 * Math.PI * (u - phi)) + Math.sin(2 * Math.PI * phi))) / (2 * Math.PI)),
  );
}

const array = (values: readonly number[]) => `[${values.join(',')}]`;

/** The service picked by each per-mille slot. */
function pickTable(): number[] {
  const table: number[] = [];
  SERVICES.forEach((s, i) => {
    for (let k = 0; k < s.weight; k++) table.push(i + 1);
  });
  if (table.length !== 1000) throw new Error(`service weights sum to ${table.length}, not 1000`);
  return table;
}

/**
 * One INSERT of rows [start, start + count) of a day of `total` rows starting at `daySecs` (UTC).
 * Aliases are computed in an inner SELECT over numbers(); the outer SELECT lists the table's columns.
 */
export function generateInsertSql(daySecs: number, total: number, start: number, count: number): string {
  const pick = pickTable();
  const col = <K extends keyof Service>(key: K, map: (v: Service[K]) => number = (v) => Number(v)) =>
    array(SERVICES.map((s) => map(s[key])));
  const u = (hash: number, high: boolean) =>
    high
      ? `(bitShiftRight(h${hash}, 32) + 0.5) / 4294967296`
      : `(bitAnd(h${hash}, 4294967295) + 0.5) / 4294967296`;
  const v4 = (expr: string) => `toIPv6(toIPv4(toUInt32(${expr})))`;
  const hex16 = (expr: string) => `lower(hex(toUInt16(${expr})))`;
  const inner = `
    SELECT
      number AS n,
      cityHash64(n, 1) AS h1, cityHash64(n, 2) AS h2, cityHash64(n, 3) AS h3,
      cityHash64(n, 4) AS h4, cityHash64(n, 5) AS h5, cityHash64(n, 6) AS h6,
      ${u(1, false)} AS u0, ${u(1, true)} AS u1, ${u(2, false)} AS u2, ${u(2, true)} AS u3,
      ${u(3, false)} AS u4, ${u(3, true)} AS u5, ${u(4, false)} AS u6, ${u(4, true)} AS u7,
      ${u(5, false)} AS u8, ${u(5, true)} AS u9, ${u(6, false)} AS u10, ${u(6, true)} AS u11,
      n / ${total} AS uf,
      ${daySecs} + toUInt32(86400 * (uf - ${A} * (sin(2 * pi() * (uf - ${PEAK_HOUR / 24})) + sin(2 * pi() * ${PEAK_HOUR / 24})) / (2 * pi()))) AS tr_secs,
      arrayElement(${array(pick)}, toUInt32(u0 * 1000) + 1) AS s,
      arrayElement(${col('proto')}, s) AS s_proto,
      arrayElement(${col('port')}, s) AS s_port,
      arrayElement(${col('scope')}, s) AS scope,
      arrayElement(${col('packets')}, s) AS s_packets,
      arrayElement(${col('fwd', (v) => v[0])}, s) AS fwd_min,
      arrayElement(${col('fwd', (v) => v[1])}, s) AS fwd_span,
      arrayElement(${col('rev', (v) => v[0])}, s) AS rev_min,
      arrayElement(${col('rev', (v) => v[1])}, s) AS rev_span,
      arrayElement(${array(SERVICES.map((x) => x.fail))}, s) AS fail_p,
      arrayElement(${col('v6', (v) => (v ? 1 : 0))}, s) AS v6_ok,
      -- Hosts: internal clients with a power-law activity, external servers with Zipf(1) popularity.
      toUInt32(20000 * u1 * u1) AS ci,
      -- Scanners are their own population (2,000 sources, a few of them busy), not popular servers.
      if(scope = 5, 300000 + toUInt32(exp(u2 * log(2001))) - 1, toUInt32(exp(u2 * log(200001))) - 1) AS e,
      toUInt32(400 * u2 * u2) AS si,
      intDiv(ci, 250) AS subnet,
      167772160 + (1 + subnet) * 256 + 1 + ci % 250 AS ci_v4,
      738197504 + intHash32(e) % 1342177280 AS e_v4,
      167772160 + (200 + intDiv(si, 250)) * 256 + 1 + si % 250 AS si_v4,
      167772160 + 250 * 256 + 1 + ci % 20 AS dmz_v4,
      167772160 + 53 + ci % 2 AS resolver_v4,
      v6_ok AND u3 < 0.12 AS v6,
      multiIf(scope IN (2, 5), 6, scope = 4, 1, arrayElement(${array(SITE_EXPORTER)}, 1 + subnet % ${SITE_EXPORTER.length})) AS ex,
      ex >= 5 AS ipfix,
      NOT (ex = 6) AND u4 < 0.45 AS reversed,
      s_proto = 6 AND u5 < fail_p AS failed,
      -- Client and server sides of the conversation, before the row's direction is applied.
      multiIf(scope IN (0, 1, 3), ci_v4, scope IN (2, 5), e_v4, resolver_v4) AS client_v4,
      multiIf(scope IN (0, 4), e_v4, scope = 1, si_v4, scope = 2, dmz_v4, scope = 3, resolver_v4, ci_v4) AS server_v4,
      concat('fd00:0:0:', ${hex16('1 + subnet')}, '::', ${hex16('1 + ci % 250')}) AS ci_v6,
      concat('2a0', toString(e % 10), ':', ${hex16('intHash32(e) % 65536')}, ':', ${hex16('intDiv(e, 200)')}, '::', ${hex16('1 + e % 65000')}) AS e_v6,
      concat('fd00:0:0:fa::', ${hex16('1 + ci % 20')}) AS dmz_v6,
      if(v6, toIPv6(if(scope = 0, ci_v6, e_v6)), ${v4('client_v4')}) AS client_addr,
      if(v6, toIPv6(if(scope = 0, e_v6, dmz_v6)), ${v4('server_v4')}) AS server_addr,
      scope IN (2, 5) AS client_ext,
      scope IN (0, 4) AS server_ext,
      if(e < 1000, arrayElement(${array(BIG_ASES)}, 1 + e % ${BIG_ASES.length}), 1000 + intHash32(intDiv(e, 200)) % 60000) AS e_as,
      if(v6, 32 + (intHash32(intDiv(e, 200)) % 3) * 8, 16 + intHash32(intDiv(e, 200)) % 9) AS e_mask,
      if(v6, 64, 24) AS int_mask,
      if(s_proto = 1, 0, 32768 + toUInt16(u9 * 28232)) AS client_port,
      if(s_proto = 1, 0, s_port) AS server_port,
      -- Interfaces: a LAN port per site subnet, two uplinks, a datacenter side, the DMZ and resolvers.
      1 + subnet % 8 AS lan_if,
      100 + ci % 2 AS wan_if,
      multiIf(scope IN (2, 5), wan_if, scope = 4, 30, lan_if) AS client_if,
      multiIf(scope IN (0, 4), wan_if, scope = 1, 9 + intDiv(si, 250) % 8, scope = 2, 20, scope = 3, 30, lan_if) AS server_if,
      -- Volume: Pareto(α ≈ 1.15) packets scaled per service, at least a handshake's worth for TCP.
      if(s_packets = 0, 1 + (u6 < 0.03), toUInt64(least(2000000, floor(s_packets * pow(u6, -0.87))))) AS pk_base,
      multiIf(failed AND reversed, 1, failed, 1 + (u11 < 0.3) + (u11 < 0.1), s_proto = 6, greatest(pk_base, 3), pk_base) AS pk,
      multiIf(failed, if(reversed, 40, 60), reversed, rev_min + u7 * rev_span, fwd_min + u7 * fwd_span) AS bpp,
      if(ex = 6 AND NOT failed AND s_proto != 1, toUInt64(pk * (0.6 + u4 * 0.8)), 0) AS rpk,
      multiIf(s_proto != 6, 0, failed, if(reversed, 20, 2), pk > 1000, 24, NOT reversed AND u11 < 0.04, 30, 27) AS flags,
      if(s_proto = 1, multiIf(u11 < 0.05, 3, reversed, 0, 8), 0) AS icmp_t,
      if(s_proto = 1 AND u11 < 0.05, 3, 0) AS icmp_c,
      -- Times: exported 1-60 s after the flow's last packet; long flows cut by a 60 s active timeout.
      tr_secs * 1000 - (1000 + toUInt32(u8 * 59000)) AS end_ms,
      if(pk <= 1, 0, least(toUInt64(pk * (2 + u10 * 300)), if(pk > 1000, 60000, 1800000))) AS dur_ms
    FROM numbers(${start}, ${count})`;
  const outer: Record<Column, string> = {
    time_received: `toDateTime(tr_secs, 'UTC')`,
    flow_start: `fromUnixTimestamp64Milli(toInt64(end_ms - dur_ms), 'UTC')`,
    flow_end: `fromUnixTimestamp64Milli(toInt64(end_ms), 'UTC')`,
    exporter_address: v4('184483840 + ex'),
    version: 'if(ipfix, 10, 9)',
    observation_domain_id: 'if(ipfix, 1, 0)',
    in_if: 'if(reversed, server_if, client_if)',
    out_if: 'if(reversed, client_if, server_if)',
    src_addr: 'if(reversed, server_addr, client_addr)',
    dst_addr: 'if(reversed, client_addr, server_addr)',
    src_port: 'if(reversed, server_port, client_port)',
    dst_port: 'if(s_proto = 1, icmp_t * 256 + icmp_c, if(reversed, client_port, server_port))',
    proto: 's_proto',
    tcp_flags: 'flags',
    tos: 'multiIf(s_port IN (5060, 3478), 184, u10 > 0.97, 32, 0)',
    bytes: 'toUInt64(pk * bpp)',
    packets: 'pk',
    sampling_rate: '1',
    src_as: 'if(if(reversed, server_ext, client_ext), e_as, 0)',
    dst_as: 'if(if(reversed, client_ext, server_ext), e_as, 0)',
    src_mask: 'if(if(reversed, server_ext, client_ext), e_mask, int_mask)',
    dst_mask: 'if(if(reversed, client_ext, server_ext), e_mask, int_mask)',
    // The next hop is an uplink gateway when the row leaves through an uplink.
    next_hop: `if(if(reversed, client_if, server_if) >= 100, ${v4('184483840 + 256 + if(reversed, client_if, server_if) - 99')}, toIPv6('::'))`,
    direction: `if(ipfix, 'ingress', 'unknown')`,
    icmp_type: 'icmp_t',
    icmp_code: 'icmp_c',
    src_vlan: 'if(ex = 3, 100 + lan_if, 0)',
    dst_vlan: 'if(ex = 3, 100 + lan_if, 0)',
    end_reason: 'if(ipfix, multiIf(failed, 1, pk > 1000, 2, s_proto = 6, 3, 1), 0)',
    firewall_event: 'if(ex = 6, if(failed, 3, 2), 0)',
    reverse_bytes: 'toUInt64(rpk * (rev_min + u7 * rev_span))',
    reverse_packets: 'rpk',
  };
  return `INSERT INTO flows (${FLOW_COLUMNS.join(', ')})
SELECT ${FLOW_COLUMNS.map((c) => `${outer[c]} AS ${c}_out`).join(',\n  ')}
FROM (${inner})`;
}

/** Default values for the injected rows' columns (SQL expressions over `number`). */
const EVENT_DEFAULTS: Record<Column, string> = {
  time_received: '0',
  flow_start: '0',
  flow_end: '0',
  exporter_address: `toIPv6('10.255.0.1')`,
  version: '9',
  observation_domain_id: '0',
  in_if: '1',
  out_if: '100',
  src_addr: `toIPv6('::')`,
  dst_addr: `toIPv6('::')`,
  src_port: '0',
  dst_port: '0',
  proto: '6',
  tcp_flags: '2',
  tos: '0',
  bytes: '0',
  packets: '0',
  sampling_rate: '1',
  src_as: '0',
  dst_as: '0',
  src_mask: '24',
  dst_mask: '24',
  next_hop: `toIPv6('::')`,
  direction: `'unknown'`,
  icmp_type: '0',
  icmp_code: '0',
  src_vlan: '0',
  dst_vlan: '0',
  end_reason: '0',
  firewall_event: '0',
  reverse_bytes: '0',
  reverse_packets: '0',
};

export interface InjectedEvent {
  readonly name: string;
  /** Seconds into the day after which the event's rows are inserted (its last row's time). */
  readonly lastOffsetSecs: number;
  readonly rows: number;
  readonly sql: string;
}

function eventSql(rows: number, values: Partial<Record<Column, string>>): string {
  const all = { ...EVENT_DEFAULTS, ...values };
  return `INSERT INTO flows (${FLOW_COLUMNS.join(', ')})
SELECT ${FLOW_COLUMNS.map((c) => `${all[c]} AS ${c}_out`).join(', ')} FROM numbers(${rows})`;
}

/** Times of an event row: received at `recv` (an expression in seconds), ended `lagMs` before. */
function times(recv: string, lagMs: number, durationMs: number): Partial<Record<Column, string>> {
  return {
    time_received: `toDateTime(${recv}, 'UTC')`,
    flow_end: `fromUnixTimestamp64Milli(toInt64((${recv}) * 1000 - ${lagMs}), 'UTC')`,
    flow_start: `fromUnixTimestamp64Milli(toInt64((${recv}) * 1000 - ${lagMs + durationMs}), 'UTC')`,
  };
}

/** The attacks injected so that the detector queries return something. */
export const SCAN_WINDOW_OFFSET = 13 * 3600;
export const EXFIL_HOUR_OFFSET = PEAK_HOUR * 3600;
export const SCANNER = '203.0.113.66';
export const SCAN_VICTIM = '10.0.5.20';
export const SWEEPER = '10.0.7.77';
export const EXFIL_SOURCE = '10.0.9.99';
export const EXFIL_DESTINATION = '198.51.100.7';

export function injectedEvents(daySecs: number): InjectedEvent[] {
  const w = daySecs + SCAN_WINDOW_OFFSET;
  const x = daySecs + EXFIL_HOUR_OFFSET;
  return [
    {
      // SYN to ports 1-1000 of one DMZ-facing host, 7 probes a second, seen by the biflow firewall.
      name: `vertical scan ${SCANNER} → ${SCAN_VICTIM}, 1000 ports, 13:01-13:03`,
      lastOffsetSecs: SCAN_WINDOW_OFFSET + 60 + 143,
      rows: 1000,
      sql: eventSql(1000, {
        ...times(`${w + 60} + intDiv(number, 7)`, 2000, 0),
        exporter_address: `toIPv6('10.255.0.6')`,
        version: '10',
        observation_domain_id: '1',
        direction: `'ingress'`,
        in_if: '100',
        out_if: '6',
        src_addr: `toIPv6('${SCANNER}')`,
        dst_addr: `toIPv6('${SCAN_VICTIM}')`,
        src_port: '54321',
        dst_port: 'number + 1',
        packets: '1',
        bytes: '44',
        src_as: '64500',
        firewall_event: '3',
        end_reason: '1',
      }),
    },
    {
      // One infected workstation probing SMB on 600 internal hosts, two SYNs each.
      name: `horizontal sweep ${SWEEPER} → 600 hosts :445, 13:02-13:04`,
      lastOffsetSecs: SCAN_WINDOW_OFFSET + 120 + 120,
      rows: 600,
      sql: eventSql(600, {
        ...times(`${w + 120} + intDiv(number, 5)`, 3000, 1000),
        exporter_address: `toIPv6('10.255.0.2')`,
        in_if: '7',
        out_if: '1 + intDiv(number, 250)',
        src_addr: `toIPv6('${SWEEPER}')`,
        dst_addr: `toIPv6(toIPv4(toUInt32(167772160 + (40 + intDiv(number, 250)) * 256 + 1 + number % 250)))`,
        src_port: '49152 + number',
        dst_port: '445',
        packets: '2',
        bytes: '104',
      }),
    },
    {
      // A steady 56 MB a minute to one external host for an hour (about 7.5 Mbit/s).
      name: `exfiltration ${EXFIL_SOURCE} → ${EXFIL_DESTINATION}:443, 3.36 GB, 14:00-15:00`,
      lastOffsetSecs: EXFIL_HOUR_OFFSET + 30 + 59 * 60,
      rows: 60,
      sql: eventSql(60, {
        ...times(`${x + 30} + number * 60`, 5000, 60000),
        exporter_address: `toIPv6('10.255.0.3')`,
        in_if: '1',
        out_if: '100',
        src_addr: `toIPv6('${EXFIL_SOURCE}')`,
        dst_addr: `toIPv6('${EXFIL_DESTINATION}')`,
        src_port: '50123',
        dst_port: '443',
        tcp_flags: '24',
        packets: '40000',
        bytes: '56000000',
        dst_as: '64501',
        dst_mask: '24',
        next_hop: `toIPv6('10.255.1.1')`,
        src_vlan: '109',
        dst_vlan: '109',
      }),
    },
  ];
}
