import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  controlWord,
  ethernet,
  icmp,
  ipv4,
  ipv6,
  ipv6Fragment,
  ipv6Options,
  mplsStack,
  tcp,
  udp,
  vlanTag,
} from '../../test/support/frames.js';
import {
  LINKTYPE_ETHERNET,
  LINKTYPE_RAW,
  TSHARK_MISSING,
  tsharkFrameFields,
} from '../../test/support/tshark-records.js';
import {
  type ExportField,
  ExportPacketBuilder,
  encodeRecord,
  type FieldValue,
} from '../export/packet-builder.js';
import { type CollectedFlow, CollectingSink } from './collecting-sink.js';
import { Decoder } from './decoder.js';

/**
 * Packet sections (PSAMP packet reports, RFC 5476/5477; data link frames, RFC 7133): templates that
 * carry a copy of the first bytes of a sampled packet instead of flow elements. The headers in the
 * section become the flow columns; every section built here is also decoded by tshark's own
 * dissectors, and the columns are compared with what tshark reads.
 */

const T0 = Date.UTC(2026, 10, 23, 10, 0, 0);
const SECS = T0 / 1000;
const V = 65535;
const F = (id: number, length: number, enterprise = 0): ExportField => ({ id, length, enterprise });
const M1 = '02:00:5e:00:00:01';
const M2 = '02:00:5e:00:00:02';
/** Selector 1: systematic count-based 1 in 100 (RFC 5477), referred to by every data record. */
const RATE = 100;
const SELECTOR = { id: 400, scopeCount: 1, fields: [F(302, 4), F(304, 2), F(305, 4), F(306, 4)] };

/** selectorId, ingressInterface, egressInterface, flowDirection, dataLinkFrameSize, dataLinkFrameSection. */
const FRAME = { id: 256, fields: [F(302, 4), F(10, 4), F(14, 4), F(61, 1), F(312, 2), F(315, V)] };
/** selectorId, ingressInterface, ipHeaderPacketSection: no frame size, bytes from the IP header. */
const IP = { id: 257, fields: [F(302, 4), F(10, 4), F(313, V)] };
/** ipHeaderPacketSection holding only the IP header, ipPayloadPacketSection the rest. */
const IP_PAYLOAD = { id: 258, fields: [F(302, 4), F(313, V), F(314, V)] };
/** dataLinkFrameSize, mplsLabelStackSection, mplsPayloadPacketSection. */
const MPLS = { id: 259, fields: [F(302, 4), F(312, 2), F(316, V), F(317, V)] };
/** A fixed-length ipHeaderPacketSection (48 bytes). */
const IP_FIXED = { id: 260, fields: [F(302, 4), F(313, 48)] };
/** sectionOffset (RFC 5477): a section that does not start at its header cannot be read. */
const OFFSET = { id: 261, fields: [F(302, 4), F(409, 2), F(312, 2), F(315, V)] };
/** Its own addresses and counters (they win), the section fills what the template lacks. */
const OWN = { id: 262, fields: [F(8, 4), F(12, 4), F(1, 4), F(2, 4), F(315, V)] };
/** dataLinkFrameType (RFC 7133) 2 = IEEE 802.11: not Ethernet, not read. */
const LINK_TYPE = { id: 263, fields: [F(302, 4), F(408, 2), F(312, 2), F(315, V)] };
/** An MPLS label stack section alone: no IP header to read. */
const STACK_ONLY = { id: 264, fields: [F(302, 4), F(312, 2), F(316, V)] };

interface Want {
  src: string;
  dst: string;
  proto: number;
  sport?: number;
  dport?: number;
  vlan?: number;
  icmp?: [number, number];
}

interface Case {
  name: string;
  template: { id: number; fields: ExportField[] };
  values: FieldValue[];
  /** How tshark is given the section: link type, bytes, decode-as rules. */
  oracle: { linktype: number; bytes: number[]; decodeAs?: string[] } | null;
  /** null: the section cannot be read and the record is dropped, counted under `dropped`. */
  want: Want | null;
  dropped?: 'packet_section_unreadable' | 'packet_section_not_ip';
  /** Unsampled bytes: the frame size, else the IP total length. */
  bytes?: number;
}

const v4tcp = ipv4({
  src: '198.51.100.7',
  dst: '203.0.113.9',
  proto: 6,
  tos: 0x10,
  payload: tcp(51_000, 443, 0x012),
});
const mplsFrame = (payload: number[]) => ethernet(M1, M2, 0x8847, payload);

const CASES: Case[] = [
  {
    name: 'Ethernet, 802.1Q VLAN 100, IPv4, TCP SYN+ACK, TOS 0x10',
    template: FRAME,
    values: [
      1,
      5,
      6,
      0,
      1514,
      Uint8Array.from(ethernet(M1, M2, 0x8100, [...vlanTag(100, 3), 0x08, 0x00, ...v4tcp])),
    ],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: ethernet(M1, M2, 0x8100, [...vlanTag(100, 3), 0x08, 0x00, ...v4tcp]),
    },
    want: { src: '198.51.100.7', dst: '203.0.113.9', proto: 6, sport: 51_000, dport: 443, vlan: 100 },
    bytes: 1514,
  },
  {
    name: 'QinQ (802.1ad 200 outside, 802.1Q 300 inside), IPv6 with Hop-by-Hop and a first Fragment, UDP',
    template: FRAME,
    values: [1, 5, 6, 0, 1518, 0],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: ethernet(M1, M2, 0x88a8, [
        ...vlanTag(200),
        0x81,
        0x00,
        ...vlanTag(300),
        0x86,
        0xdd,
        ...ipv6({
          src: '2001:db8:1::10',
          dst: '2001:db8:2::20',
          next: 0,
          trafficClass: 0xb8,
          payloadLength: 1456,
          payload: [...ipv6Options(44), ...ipv6Fragment(17, 0, true), ...udp(5_004, 5_005, [1, 2, 3, 4])],
        }),
      ]),
    },
    want: { src: '2001:db8:1::10', dst: '2001:db8:2::20', proto: 17, sport: 5_004, dport: 5_005, vlan: 200 },
    bytes: 1518,
  },
  {
    name: 'IPv4 ICMP echo request',
    template: FRAME,
    values: [1, 5, 6, 0, 98, 0],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: ethernet(
        M1,
        M2,
        0x0800,
        ipv4({ src: '10.0.0.1', dst: '10.0.0.2', proto: 1, payload: icmp(8, 0) }),
      ),
    },
    want: { src: '10.0.0.1', dst: '10.0.0.2', proto: 1, icmp: [8, 0] },
    bytes: 98,
  },
  {
    name: 'IPv6 with a Routing header, ICMPv6 destination unreachable (1/4)',
    template: FRAME,
    values: [1, 5, 6, 0, 118, 0],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: ethernet(
        M1,
        M2,
        0x86dd,
        ipv6({
          src: 'fe80::1',
          dst: '2001:db8::99',
          next: 43,
          payload: [...ipv6Options(58, [0, 0, 0, 0, 0, 0]), ...icmp(1, 4)],
        }),
      ),
    },
    want: { src: 'fe80::1', dst: '2001:db8::99', proto: 58, icmp: [1, 4] },
    bytes: 118,
  },
  {
    name: 'MPLS, two labels, IPv4 UDP (payload type from the first nibble)',
    template: FRAME,
    values: [1, 5, 6, 0, 1400, 0],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: mplsFrame([
        ...mplsStack([16_001, 16_002]),
        ...ipv4({ src: '192.0.2.33', dst: '192.0.2.44', proto: 17, payload: udp(123, 123) }),
      ]),
    },
    want: { src: '192.0.2.33', dst: '192.0.2.44', proto: 17, sport: 123, dport: 123 },
    bytes: 1400,
  },
  {
    name: 'MPLS Ethernet pseudowire with control word, inner VLAN 42, IPv4 TCP',
    template: FRAME,
    values: [1, 5, 6, 0, 1000, 0],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: mplsFrame([
        ...mplsStack([100]),
        ...controlWord(7),
        ...ethernet('a2:00:00:00:00:01', M2, 0x8100, [
          ...vlanTag(42),
          0x08,
          0x00,
          ...ipv4({ src: '172.16.1.1', dst: '172.16.2.2', proto: 6, payload: tcp(2_000, 22, 0x018) }),
        ]),
      ]),
      decodeAs: ['mpls.label==100,pwethcw'],
    },
    want: { src: '172.16.1.1', dst: '172.16.2.2', proto: 6, sport: 2_000, dport: 22, vlan: 42 },
    bytes: 1000,
  },
  {
    name: 'MPLS Ethernet pseudowire without control word, IPv6 UDP',
    template: FRAME,
    values: [1, 5, 6, 0, 900, 0],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: mplsFrame([
        ...mplsStack([200]),
        ...ethernet(
          'a2:00:00:00:00:01',
          M2,
          0x86dd,
          ipv6({ src: '2001:db8::a', dst: '2001:db8::b', next: 17, payload: udp(4_789, 4_789) }),
        ),
      ]),
      decodeAs: ['mpls.label==200,pwethnocw'],
    },
    want: { src: '2001:db8::a', dst: '2001:db8::b', proto: 17, sport: 4_789, dport: 4_789 },
    bytes: 900,
  },
  {
    name: 'MPLS Ethernet pseudowire without control word, inner MAC starting with nibble 0',
    template: FRAME,
    values: [1, 5, 6, 0, 800, 0],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: mplsFrame([
        ...mplsStack([200]),
        ...ethernet(
          '00:1b:21:00:00:01',
          M2,
          0x0800,
          ipv4({ src: '10.20.30.40', dst: '10.20.30.41', proto: 6, payload: tcp(3_306, 40_000, 0x011) }),
        ),
      ]),
      decodeAs: ['mpls.label==200,pwethnocw'],
    },
    want: { src: '10.20.30.40', dst: '10.20.30.41', proto: 6, sport: 3_306, dport: 40_000 },
    bytes: 800,
  },
  {
    name: 'GRE tunnel: the outer IPv4 header is the flow (proto 47, no ports)',
    template: FRAME,
    values: [1, 5, 6, 0, 600, 0],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: ethernet(
        M1,
        M2,
        0x0800,
        ipv4({
          src: '198.18.0.1',
          dst: '198.18.0.2',
          proto: 47,
          payload: [
            0,
            0,
            0x08,
            0x00,
            ...ipv4({ src: '10.9.1.1', dst: '10.9.2.2', proto: 6, payload: tcp(1_000, 80, 0x018) }),
          ],
        }),
      ),
    },
    want: { src: '198.18.0.1', dst: '198.18.0.2', proto: 47 },
    bytes: 600,
  },
  {
    name: 'IPv4 fragment past the first: no transport header, ports 0',
    template: FRAME,
    values: [1, 5, 6, 0, 1514, 0],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: ethernet(
        M1,
        M2,
        0x0800,
        ipv4({
          src: '10.1.1.1',
          dst: '10.1.1.2',
          proto: 17,
          fragmentOffset: 185,
          payload: [0x13, 0x88, 0x13, 0x89, 0, 0, 0, 0],
        }),
      ),
    },
    want: { src: '10.1.1.1', dst: '10.1.1.2', proto: 17 },
    bytes: 1514,
  },
  {
    name: 'IPv6 ESP: the protocol, no ports',
    template: FRAME,
    values: [1, 5, 6, 0, 200, 0],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: ethernet(
        M1,
        M2,
        0x86dd,
        ipv6({
          src: '2001:db8::1',
          dst: '2001:db8::2',
          next: 50,
          payload: [0, 0, 1, 0, 0, 0, 0, 1, 9, 9, 9, 9],
        }),
      ),
    },
    want: { src: '2001:db8::1', dst: '2001:db8::2', proto: 50 },
    bytes: 200,
  },
  {
    name: 'PPPoE session (a BNG), IPv4 TCP',
    template: FRAME,
    values: [1, 5, 6, 0, 1492, 0],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: ethernet(M1, M2, 0x8864, [0x11, 0x00, 0x12, 0x34, 0, v4tcp.length + 2, 0x00, 0x21, ...v4tcp]),
    },
    want: { src: '198.51.100.7', dst: '203.0.113.9', proto: 6, sport: 51_000, dport: 443 },
    bytes: 1492,
  },
  {
    name: 'ARP: not IP, dropped and counted',
    template: FRAME,
    values: [1, 5, 6, 0, 60, 0],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: ethernet(
        'ff:ff:ff:ff:ff:ff',
        M2,
        0x0806,
        [0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0x5e, 0, 0, 2, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2],
      ),
    },
    want: null,
    dropped: 'packet_section_not_ip',
  },
  {
    name: 'an 802.3 frame with an LLC header (spanning tree): not IP',
    template: FRAME,
    values: [1, 5, 6, 0, 64, 0],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: ethernet('01:80:c2:00:00:00', M2, 38, [0x42, 0x42, 0x03, 0, 0, 0, 0, 0]),
    },
    want: null,
    dropped: 'packet_section_not_ip',
  },
  {
    name: 'a frame cut inside the IPv4 header: unreadable, dropped and counted',
    template: FRAME,
    values: [1, 5, 6, 0, 1514, 0],
    oracle: { linktype: LINKTYPE_ETHERNET, bytes: ethernet(M1, M2, 0x0800, v4tcp.slice(0, 16)) },
    want: null,
    dropped: 'packet_section_unreadable',
  },
  {
    name: 'ipHeaderPacketSection: IPv4 with options, TCP; bytes from the IP total length',
    template: IP,
    values: [1, 7, 0],
    oracle: {
      linktype: LINKTYPE_RAW,
      bytes: ipv4({
        src: '100.64.0.1',
        dst: '100.64.0.2',
        proto: 6,
        ipOptions: [1, 1, 1, 0],
        totalLength: 1_420,
        payload: tcp(8_080, 61_000, 0x010),
      }),
    },
    want: { src: '100.64.0.1', dst: '100.64.0.2', proto: 6, sport: 8_080, dport: 61_000 },
    bytes: 1_420,
  },
  {
    name: 'ipHeaderPacketSection: IPv6 with a Destination Options header, TCP',
    template: IP,
    values: [1, 7, 0],
    oracle: {
      linktype: LINKTYPE_RAW,
      bytes: ipv6({
        src: '2001:db8:ff::1',
        dst: '2001:db8:ff::2',
        next: 60,
        payloadLength: 1_000,
        payload: [...ipv6Options(6), ...tcp(443, 50_123, 0x011)],
      }),
    },
    want: { src: '2001:db8:ff::1', dst: '2001:db8:ff::2', proto: 6, sport: 443, dport: 50_123 },
    bytes: 1_040,
  },
  {
    name: 'ipHeaderPacketSection cut inside the IPv6 header: unreadable',
    template: IP,
    values: [
      1,
      7,
      Uint8Array.from(ipv6({ src: '2001:db8::1', dst: '2001:db8::2', next: 6, payload: [] }).slice(0, 30)),
    ],
    oracle: null,
    want: null,
    dropped: 'packet_section_unreadable',
  },
  {
    name: 'ipHeaderPacketSection with the IPv4 header only, ipPayloadPacketSection with the UDP header',
    template: IP_PAYLOAD,
    values: [
      1,
      Uint8Array.from(
        ipv4({ src: '203.0.113.70', dst: '203.0.113.71', proto: 17, totalLength: 1_200, payload: [] }),
      ),
      Uint8Array.from(udp(4_500, 4_500)),
    ],
    oracle: {
      linktype: LINKTYPE_RAW,
      bytes: ipv4({
        src: '203.0.113.70',
        dst: '203.0.113.71',
        proto: 17,
        totalLength: 1_200,
        payload: udp(4_500, 4_500),
      }),
    },
    want: { src: '203.0.113.70', dst: '203.0.113.71', proto: 17, sport: 4_500, dport: 4_500 },
    bytes: 1_200,
  },
  {
    name: 'a fixed-length (48-byte) ipHeaderPacketSection',
    template: IP_FIXED,
    values: [1, 0],
    oracle: {
      linktype: LINKTYPE_RAW,
      bytes: ipv4({
        src: '192.0.2.200',
        dst: '192.0.2.201',
        proto: 6,
        totalLength: 52,
        payload: tcp(25, 33_000, 0x018, [0x45, 0x48, 0x4c, 0x4f, 0x20, 0x78, 0x0d, 0x0a]),
      }),
    },
    want: { src: '192.0.2.200', dst: '192.0.2.201', proto: 6, sport: 25, dport: 33_000 },
    bytes: 52,
  },
  {
    name: 'mplsLabelStackSection with IPv6 explicit null, mplsPayloadPacketSection with IPv6 TCP',
    template: MPLS,
    values: [1, 1_300, Uint8Array.from(mplsStack([16_004, 2])), 0],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: mplsFrame([
        ...mplsStack([16_004, 2]),
        ...ipv6({ src: '2001:db8:5::1', dst: '2001:db8:6::1', next: 6, payload: tcp(179, 40_001, 0x018) }),
      ]),
    },
    want: { src: '2001:db8:5::1', dst: '2001:db8:6::1', proto: 6, sport: 179, dport: 40_001 },
    bytes: 1_300,
  },
  {
    name: 'mplsLabelStackSection and a pseudowire payload with control word and Ethernet',
    template: MPLS,
    values: [1, 700, Uint8Array.from(mplsStack([300])), 0],
    oracle: {
      linktype: LINKTYPE_ETHERNET,
      bytes: mplsFrame([
        ...mplsStack([300]),
        ...controlWord(),
        ...ethernet(
          'a2:00:00:00:00:09',
          M2,
          0x0800,
          ipv4({ src: '10.77.0.1', dst: '10.77.0.2', proto: 1, payload: icmp(0, 0) }),
        ),
      ]),
      decodeAs: ['mpls.label==300,pwethcw'],
    },
    want: { src: '10.77.0.1', dst: '10.77.0.2', proto: 1, icmp: [0, 0] },
    bytes: 700,
  },
  {
    name: 'MPLS G-ACh (GAL, RFC 5586): not IP',
    template: MPLS,
    values: [1, 100, Uint8Array.from(mplsStack([13])), Uint8Array.from([0x10, 0x00, 0x00, 0x07, 1, 2, 3, 4])],
    oracle: null,
    want: null,
    dropped: 'packet_section_not_ip',
  },
  {
    name: 'sectionOffset 14: the section does not start at the frame, unreadable',
    template: OFFSET,
    values: [1, 14, 1514, Uint8Array.from(v4tcp)],
    oracle: null,
    want: null,
    dropped: 'packet_section_unreadable',
  },
  {
    name: 'dataLinkFrameType 802.11: not Ethernet, unreadable',
    template: LINK_TYPE,
    values: [1, 2, 1514, Uint8Array.from(ethernet(M1, M2, 0x0800, v4tcp))],
    oracle: null,
    want: null,
    dropped: 'packet_section_unreadable',
  },
  {
    name: 'an MPLS label stack section alone: no IP header, unreadable',
    template: STACK_ONLY,
    values: [1, 1514, Uint8Array.from(mplsStack([16_001, 16_002]))],
    oracle: null,
    want: null,
    dropped: 'packet_section_unreadable',
  },
];

/** The section bytes go where the template's section field is (values given as 0 are the oracle's bytes). */
function recordValues(c: Case): FieldValue[] {
  if (!c.oracle) return c.values;
  const bytes = Uint8Array.from(c.oracle.bytes);
  const values = [...c.values];
  if (c.template === FRAME) values[5] = bytes;
  else if (c.template === IP) values[2] = bytes;
  else if (c.template === IP_FIXED) values[1] = bytes.subarray(0, 48);
  else if (c.template === MPLS && values[3] === 0) {
    // The payload section is what follows the label stack in the oracle's frame.
    const stack = values[2] as Uint8Array;
    values[3] = bytes.subarray(14 + stack.length);
  }
  return values;
}

function exportPacket(cases: readonly Case[]): Uint8Array {
  const templates = [...new Set(cases.map((c) => c.template))];
  const builder = new ExportPacketBuilder(10, 9)
    .optionsTemplates([SELECTOR])
    .templates(templates)
    .data(SELECTOR.id, [encodeRecord(SELECTOR.fields, [1, 1, 1, RATE - 1])]);
  // One data set per record, in case order, so the decoded rows line up with the cases.
  for (const c of cases) builder.data(c.template.id, [encodeRecord(c.template.fields, recordValues(c))]);
  return builder.build({ exportSecs: SECS, sequence: 0 });
}

function decode(cases: readonly Case[], compile: boolean) {
  const sink = new CollectingSink();
  const decoder = new Decoder(sink, { compile });
  decoder.decode(decoder.exporter('192.0.2.10'), exportPacket(cases), T0);
  return { flows: sink.flows, decoder };
}

const columns = (f: CollectedFlow) => ({
  src: f.src_addr,
  dst: f.dst_addr,
  proto: f.proto,
  sport: f.src_port,
  dport: f.dst_port,
  vlan: f.src_vlan,
  icmp: [f.icmp_type, f.icmp_code],
});

const wanted = (w: Want) => ({
  src: w.src,
  dst: w.dst,
  proto: w.proto,
  sport: w.sport ?? 0,
  dport: w.dport ?? 0,
  vlan: w.vlan ?? 0,
  icmp: w.icmp ?? [0, 0],
});

describe('packet sections become flows', () => {
  test('headers into the flow columns; bytes from the frame size or IP length, packets 1, both sampled', () => {
    for (const compile of [true, false]) {
      const { flows, decoder } = decode(CASES, compile);
      const kept = CASES.filter((c) => c.want !== null);
      expect(flows.map((f, i) => [kept[i]?.name, columns(f)])).toEqual(
        kept.map((c) => [c.name, wanted(c.want!)]),
      );
      expect(flows.map((f) => [f.bytes, f.packets, f.sampling_rate])).toEqual(
        kept.map((c) => [c.bytes! * RATE, RATE, RATE]),
      );
      // Interfaces and direction still come from the template's own elements.
      expect(
        flows.filter((f) => f.template_id === FRAME.id).every((f) => f.in_if === 5 && f.out_if === 6),
      ).toBe(true);
      const count = (reason: string) => CASES.filter((c) => c.dropped === reason).length;
      expect(decoder.counters).toMatchObject({
        packet_section_unreadable: count('packet_section_unreadable'),
        packet_section_not_ip: count('packet_section_not_ip'),
        records: kept.length,
        sampling_rate_unknown: 0,
      });
      expect(decoder.streams()[0]).toMatchObject({
        packet_section_unreadable: count('packet_section_unreadable'),
        packet_section_not_ip: count('packet_section_not_ip'),
        records: kept.length,
        sequence_lost: 0,
      });
    }
  });

  test('TCP flags and TOS/traffic class from the section', () => {
    const { flows } = decode(CASES.slice(0, 2), true);
    expect(flows.map((f) => [f.tcp_flags, f.tos])).toEqual([
      [0x012, 0x10],
      [0, 0xb8],
    ]);
  });

  test('a template with its own addresses and counters keeps them; the section fills the rest', () => {
    const frame = Uint8Array.from(ethernet(M1, M2, 0x0800, v4tcp));
    const own: Case[] = [
      {
        name: 'own',
        template: OWN,
        values: ['10.1.1.1', '10.2.2.2', 5_000, 5, frame],
        oracle: null,
        want: { src: '10.1.1.1', dst: '10.2.2.2', proto: 6, sport: 51_000, dport: 443 },
      },
      {
        name: 'own, section unreadable: kept with its own elements, counted',
        template: OWN,
        values: ['10.3.3.3', '10.4.4.4', 7_000, 7, frame.subarray(0, 20)],
        oracle: null,
        want: { src: '10.3.3.3', dst: '10.4.4.4', proto: 0 },
      },
    ];
    const { flows, decoder } = decode(own, true);
    expect(flows.map(columns)).toEqual(own.map((c) => wanted(c.want!)));
    expect(flows.map((f) => [f.bytes, f.packets])).toEqual([
      [5_000, 5],
      [7_000, 7],
    ]);
    expect(decoder.counters.packet_section_unreadable).toBe(1);
  });

  test('a packet report is stamped with its observation time (IE 323, 324, 325)', () => {
    const frame = Uint8Array.from(ethernet(M1, M2, 0x0800, v4tcp));
    const ntp = (ms: number) => {
      const secs = Math.floor(ms / 1000) + 2_208_988_800;
      return (BigInt(secs) << 32n) | BigInt(Math.round(((ms % 1000) / 1000) * 2 ** 32));
    };
    const cases: Case[] = [
      [F(323, 8), T0 - 1_234],
      [F(324, 8), ntp(T0 - 2_500)],
      [F(325, 8), ntp(T0 - 750)],
    ].map(([time, value], i) => ({
      name: `observation time ${i}`,
      template: { id: 270 + i, fields: [F(302, 4), time as ExportField, F(312, 2), F(315, V)] },
      values: [1, value as FieldValue, 64, frame],
      oracle: null,
      want: null,
    }));
    const { flows } = decode(cases, true);
    expect(flows.map((f) => [f.flow_start, f.flow_end])).toEqual([
      [T0 - 1_234, T0 - 1_234],
      [T0 - 2_500, T0 - 2_500],
      [T0 - 750, T0 - 750],
    ]);
  });

  test('a section running past its set is a record overrun; the packet goes on', () => {
    const good = exportPacket(CASES.slice(0, 1));
    const sink = new CollectingSink();
    const decoder = new Decoder(sink);
    const exporter = decoder.exporter('192.0.2.10');
    // Cut the last data set inside its variable-length section and fix up the set and message lengths.
    const cut = good.slice(0, good.length - 40);
    const view = new DataView(cut.buffer);
    view.setUint16(2, cut.length);
    let p = 16;
    let last = p;
    while (p < cut.length) {
      last = p;
      p += view.getUint16(p + 2);
    }
    view.setUint16(last + 2, cut.length - last);
    decoder.decode(exporter, cut, T0);
    decoder.decode(exporter, good, T0);
    expect(sink.flows.map((f) => f.src_addr)).toEqual(['198.51.100.7']);
    expect(decoder.counters.record_overrun).toBe(1);
  });

  test('random section bytes: never a throw, never garbage; every record stored or counted', () => {
    const templates = [FRAME, IP, IP_PAYLOAD, MPLS, IP_FIXED];
    // Mostly real headers with bytes flipped or cut, some pure noise.
    const sectionArb = fc.oneof(
      fc.uint8Array({ minLength: 0, maxLength: 120 }),
      fc
        .tuple(
          fc.constantFrom(...CASES.filter((c) => c.oracle).map((c) => c.oracle!.bytes)),
          fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 4 }),
          fc.nat(),
        )
        .map(([bytes, flips, cut]) => {
          const out = Uint8Array.from(bytes);
          for (const [at, value] of flips) out[at % out.length] = value;
          return out.subarray(0, cut % (out.length + 1));
        }),
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...templates), sectionArb, sectionArb), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.boolean(),
        (records, compile) => {
          const cases: Case[] = records.map(([template, a, b]) => ({
            name: 'random',
            template,
            values:
              template === FRAME
                ? [1, 1, 2, 0, 1500, a]
                : template === IP
                  ? [1, 1, a]
                  : template === IP_PAYLOAD
                    ? [1, a, b]
                    : template === MPLS
                      ? [1, 1500, a, b]
                      : [1, a],
            oracle: null,
            want: null,
          }));
          const { flows, decoder } = decode(cases, compile);
          const c = decoder.counters;
          expect(flows.length + c.packet_section_unreadable + c.packet_section_not_ip).toBe(records.length);
          for (const f of flows) {
            expect([4, 6]).toContain(f.src_addr.includes(':') ? 6 : 4);
            for (const value of [f.proto, f.src_port, f.dst_port, f.tcp_flags, f.tos, f.src_vlan, f.bytes])
              expect(Number.isInteger(value) && value >= 0).toBe(true);
            expect(f.packets).toBe(RATE);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  test.skipIf(TSHARK_MISSING !== null)('tshark reads the same headers from every section', () => {
    // One tshark run per link type and decode-as rule set.
    const groups = new Map<string, Case[]>();
    for (const c of CASES) {
      if (!c.oracle) continue;
      const key = `${c.oracle.linktype} ${(c.oracle.decodeAs ?? []).join(' ')}`;
      groups.set(key, [...(groups.get(key) ?? []), c]);
    }
    for (const group of groups.values()) {
      const oracle = group[0]!.oracle!;
      const seen = tsharkFrameFields(
        oracle.linktype,
        group.map((c) => Uint8Array.from(c.oracle!.bytes)),
        ORACLE_FIELDS,
        oracle.decodeAs ?? [],
      );
      expect(seen).toHaveLength(group.length);
      group.forEach((c, i) => {
        const flow = fromTshark(seen[i]!);
        if (c.want === null) {
          expect(flow, c.name).toBeNull();
          return;
        }
        expect(flow, c.name).not.toBeNull();
        const { ipLength, ...columns } = flow!;
        expect(columns, c.name).toEqual(wanted(c.want));
        // Without a frame size the bytes are the IP length field, which tshark reads too.
        if (c.oracle!.linktype === LINKTYPE_RAW) expect(ipLength, c.name).toBe(c.bytes);
      });
    }
  });
});

const ORACLE_FIELDS = [
  'frame.protocols',
  'ip.src',
  'ip.dst',
  'ip.proto',
  'ip.len',
  'ipv6.src',
  'ipv6.dst',
  'ipv6.plen',
  'vlan.id',
  'ieee8021ad.id',
  'tcp.srcport',
  'tcp.dstport',
  'udp.srcport',
  'udp.dstport',
  'icmp.type',
  'icmp.code',
  'icmpv6.type',
  'icmpv6.code',
  'eth.len',
];

const PROTOCOLS: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, esp: 50, gre: 47 };

/**
 * What tshark says the flow is: the outermost IP header (first occurrences), the protocol of the layer
 * right after it (IPv6 extension headers skipped), ports and ICMP type/code only from that layer, the
 * outermost VLAN tag, and the IP length field. null when tshark finds no complete IP header.
 */
function fromTshark(t: Record<string, string>): (ReturnType<typeof wanted> & { ipLength: number }) | null {
  const layers = t['frame.protocols']!.split(':');
  const at = layers.findIndex((l) => l === 'ip' || l === 'ipv6');
  if (at < 0) return null;
  const v4 = layers[at] === 'ip';
  if ((v4 ? t['ip.dst'] : t['ipv6.dst']) === '') return null;
  const next = layers.slice(at + 1).find((l) => !l.startsWith('ipv6.'));
  const proto = (next === undefined ? undefined : PROTOCOLS[next]) ?? Number(t['ip.proto']);
  const transport = next === 'tcp' || next === 'udp' ? next : null;
  const icmpLayer = next === 'icmp' || next === 'icmpv6' ? next : null;
  return {
    src: v4 ? t['ip.src']! : t['ipv6.src']!,
    dst: v4 ? t['ip.dst']! : t['ipv6.dst']!,
    proto,
    sport: transport ? Number(t[`${transport}.srcport`]) : 0,
    dport: transport ? Number(t[`${transport}.dstport`]) : 0,
    // An 802.1ad (QinQ service) tag is its own dissector in tshark; it is the outer one when present.
    vlan: Number(t['ieee8021ad.id'] || t['vlan.id'] || 0),
    icmp: icmpLayer ? [Number(t[`${icmpLayer}.type`]), Number(t[`${icmpLayer}.code`])] : [0, 0],
    ipLength: v4 ? Number(t['ip.len']) : 40 + Number(t['ipv6.plen']),
  };
}
