import type { RecordFields } from './record-fields.js';

/**
 * Reads the headers of a sampled packet from a packet section: the first bytes of the packet that
 * PSAMP packet reports (RFC 5476, elements of RFC 5477) and data link frame exports (RFC 7133) carry
 * instead of flow elements. Juniper, Cisco and PSAMP exporters send templates with little more than
 * interfaces, direction, dataLinkFrameSize (312) and dataLinkFrameSection (315), or
 * ipHeaderPacketSection (313) / mplsLabelStackSection (316) / mplsPayloadPacketSection (317).
 *
 * Read: Ethernet (802.3 with an ethertype), 802.1Q / 802.1ad / QinQ tags, PPPoE sessions, MPLS label
 * stacks (RFC 3032) with an IPv4 or IPv6 payload or an Ethernet pseudowire (RFC 4448) with or without
 * the control word (RFC 4385), IPv4 with options, IPv6 with its extension headers (RFC 8200 §4), and
 * the TCP, UDP, SCTP, UDP-Lite, DCCP, ICMP and ICMPv6 headers behind them.
 *
 * The outermost IP header is the flow, like the first occurrence of a repeated element (template.ts):
 * a GRE, IP-in-IP or VXLAN packet is a flow of the tunnel, with the tunnel's protocol and ports. The
 * first VLAN tag seen is the VLAN. A non-first fragment has no transport header, so no ports; a
 * section cut after the IP addresses keeps what it has. A section that ends before the addresses, or
 * is malformed, is unreadable; a readable frame that is not IP (ARP, LLDP, spanning tree, MPLS
 * G-ACh) is counted apart. Reads bytes from the packet buffer only and allocates nothing.
 */

export const SECTION_OK = 0;
export const SECTION_UNREADABLE = 1;
export const SECTION_NOT_IP = 2;

/** The headers read from one section. Reused for every record: IPv6 addresses are offsets in `buf`. */
export class SectionHeaders {
  /** 4 or 6 once an IP header was read. */
  family = 0;
  srcV4 = 0;
  dstV4 = 0;
  srcOff = 0;
  dstOff = 0;
  proto = 0;
  tos = 0;
  srcPort = 0;
  dstPort = 0;
  tcpFlags = 0;
  icmpType = 0;
  icmpCode = 0;
  vlan = 0;
  /** The IP length field: IPv4 total length, IPv6 40 + payload length (0 for a jumbogram). */
  ipLength = 0;

  reset(): void {
    this.family = 0;
    this.srcV4 = 0;
    this.dstV4 = 0;
    this.srcOff = 0;
    this.dstOff = 0;
    this.proto = 0;
    this.tos = 0;
    this.srcPort = 0;
    this.dstPort = 0;
    this.tcpFlags = 0;
    this.icmpType = 0;
    this.icmpCode = 0;
    this.vlan = 0;
    this.ipLength = 0;
  }
}

/** Pseudowires inside pseudowires are followed this deep, label stacks this long. */
const MAX_NESTING = 3;
const MAX_LABELS = 16;
const MAX_VLAN_TAGS = 4;
const MAX_IPV6_EXTENSIONS = 8;

/**
 * Reads the section the plan chose (NormalisationPlan.section) from the record's elements into `out`.
 * `buf` is the buffer the record was decoded from (section offsets point into it).
 */
export function readPacketSection(
  section: number,
  f: RecordFields,
  buf: Uint8Array,
  out: SectionHeaders,
): number {
  out.reset();
  // sectionOffset (IANA; RFC 5477's sections start at their header unless it says otherwise): a section
  // that starts inside its header cannot be read. Which section a non-zero offset applies to is not
  // guessed: any makes the record's sections unreadable.
  if (f.sectionOffset !== 0) return SECTION_UNREADABLE;
  switch (section) {
    case 1: {
      const start = f.ipHeaderPacketSection;
      return ip(
        buf,
        start,
        start + f.ipHeaderPacketSectionLength,
        out,
        f.ipPayloadPacketSection,
        f.ipPayloadPacketSectionLength,
      );
    }
    case 2: {
      // The bottom-of-stack label (RFC 3032) says what the payload is when it is an explicit null.
      let bottom = -1;
      const stack = f.mplsLabelStackSection;
      const stackEnd = stack + f.mplsLabelStackSectionLength;
      for (let p = stack; stackEnd - p >= 4; p += 4) {
        if (buf[p + 2]! & 1) {
          bottom = label(buf, p);
          break;
        }
      }
      const payload = f.mplsPayloadPacketSection;
      return mplsPayload(buf, payload, payload + f.mplsPayloadPacketSectionLength, bottom, out, 0);
    }
    case 3: {
      // dataLinkFrameType (RFC 7133): 1 is IEEE 802.3 Ethernet, the default; 802.11 is not read.
      if (f.dataLinkFrameType > 1) return SECTION_UNREADABLE;
      const start = f.dataLinkFrameSection;
      return ethernet(buf, start, start + f.dataLinkFrameSectionLength, out, 0);
    }
    default:
      return SECTION_UNREADABLE;
  }
}

function u16(buf: Uint8Array, p: number): number {
  return (buf[p]! << 8) | buf[p + 1]!;
}

function u32(buf: Uint8Array, p: number): number {
  return buf[p]! * 16777216 + ((buf[p + 1]! << 16) | (buf[p + 2]! << 8) | buf[p + 3]!);
}

function label(buf: Uint8Array, p: number): number {
  return (buf[p]! << 12) | (buf[p + 1]! << 4) | (buf[p + 2]! >> 4);
}

function isVlanTag(type: number): boolean {
  // 802.1Q, 802.1ad, and the pre-standard QinQ types still in use.
  return type === 0x8100 || type === 0x88a8 || type === 0x9100 || type === 0x9200;
}

/** An ethertype this reader can follow: what makes "control word, then Ethernet" plausible. */
function knownEtherType(type: number): boolean {
  return (
    type === 0x0800 ||
    type === 0x86dd ||
    type === 0x8847 ||
    type === 0x8848 ||
    type === 0x8864 ||
    isVlanTag(type)
  );
}

function ethernet(buf: Uint8Array, p: number, end: number, out: SectionHeaders, depth: number): number {
  if (end - p < 14) return SECTION_UNREADABLE;
  let type = u16(buf, p + 12);
  p += 14;
  for (let tags = 0; isVlanTag(type); tags++) {
    if (tags === MAX_VLAN_TAGS || end - p < 4) return SECTION_UNREADABLE;
    // The first (outer) tag is the frame's VLAN: the service VLAN of a QinQ frame.
    if (out.vlan === 0) out.vlan = u16(buf, p) & 0x0fff;
    type = u16(buf, p + 2);
    p += 4;
  }
  switch (type) {
    case 0x0800:
    case 0x86dd:
      return ip(buf, p, end, out, 0, 0);
    case 0x8847:
    case 0x8848:
      return mpls(buf, p, end, out, depth);
    case 0x8864: {
      // PPPoE session (RFC 2516): 6-byte header, then the PPP protocol (0x0021 IPv4, 0x0057 IPv6).
      if (end - p < 8) return SECTION_UNREADABLE;
      const ppp = u16(buf, p + 6);
      if (ppp === 0x0021 || ppp === 0x0057) return ip(buf, p + 8, end, out, 0, 0);
      return SECTION_NOT_IP;
    }
    default:
      // ARP, LLDP, an 802.3 length with LLC (spanning tree), ...
      return SECTION_NOT_IP;
  }
}

function mpls(buf: Uint8Array, p: number, end: number, out: SectionHeaders, depth: number): number {
  for (let i = 0; i < MAX_LABELS; i++) {
    if (end - p < 4) return SECTION_UNREADABLE;
    const bottom = buf[p + 2]! & 1;
    const value = label(buf, p);
    p += 4;
    if (bottom) return mplsPayload(buf, p, end, value, out, depth);
  }
  return SECTION_UNREADABLE;
}

/**
 * What follows an MPLS label stack. An explicit null bottom label names the payload (RFC 3032: 0
 * IPv4, 2 IPv6), GAL (13, RFC 5586) an associated channel. Otherwise the first nibble tells (RFC
 * 4928, RFC 4385): 4 IPv4, 6 IPv6, 1 an associated channel, 0 a pseudowire control word, then an
 * Ethernet pseudowire (RFC 4448); anything else an Ethernet pseudowire without control word. An
 * Ethernet frame whose destination MAC starts with nibble 0 looks like a control word; it is taken
 * as one only when the frame after it has an ethertype this reader knows.
 */
function mplsPayload(
  buf: Uint8Array,
  p: number,
  end: number,
  bottomLabel: number,
  out: SectionHeaders,
  depth: number,
): number {
  if (bottomLabel === 0 || bottomLabel === 2) return ip(buf, p, end, out, 0, 0);
  if (bottomLabel === 13) return SECTION_NOT_IP;
  if (end - p < 1) return SECTION_UNREADABLE;
  const nibble = buf[p]! >> 4;
  if (nibble === 4 || nibble === 6) return ip(buf, p, end, out, 0, 0);
  if (nibble === 1) return SECTION_NOT_IP;
  if (depth >= MAX_NESTING) return SECTION_UNREADABLE;
  if (nibble === 0 && end - p >= 18 && knownEtherType(u16(buf, p + 16)))
    return ethernet(buf, p + 4, end, out, depth + 1);
  return ethernet(buf, p, end, out, depth + 1);
}

/**
 * An IPv4 or IPv6 header at p. `next`/`nextLength` is ipPayloadPacketSection: the IP payload, read
 * when the header section holds nothing beyond the header itself.
 */
function ip(
  buf: Uint8Array,
  p: number,
  end: number,
  out: SectionHeaders,
  next: number,
  nextLength: number,
): number {
  if (end - p < 1) return SECTION_UNREADABLE;
  const version = buf[p]! >> 4;
  if (version === 4) {
    const headerLength = (buf[p]! & 15) * 4;
    if (end - p < 20 || headerLength < 20) return SECTION_UNREADABLE;
    out.family = 4;
    out.tos = buf[p + 1]!;
    out.ipLength = u16(buf, p + 2);
    out.proto = buf[p + 9]!;
    out.srcV4 = u32(buf, p + 12);
    out.dstV4 = u32(buf, p + 16);
    // Only the first fragment (offset 0) carries the transport header.
    if ((u16(buf, p + 6) & 0x1fff) !== 0) return SECTION_OK;
    let q = p + headerLength;
    if (q >= end && nextLength > 0) {
      q = next;
      end = next + nextLength;
    }
    transport(buf, q, end, out);
    return SECTION_OK;
  }
  if (version !== 6) return SECTION_UNREADABLE;
  if (end - p < 40) return SECTION_UNREADABLE;
  out.family = 6;
  out.tos = ((buf[p]! & 15) << 4) | (buf[p + 1]! >> 4);
  const payloadLength = u16(buf, p + 4);
  out.ipLength = payloadLength === 0 ? 0 : 40 + payloadLength;
  out.srcOff = p + 8;
  out.dstOff = p + 24;
  let header = buf[p + 6]!;
  let q = p + 40;
  if (q >= end && nextLength > 0) {
    q = next;
    end = next + nextLength;
  }
  // Extension headers (RFC 8200 §4): the protocol is the first header that is not one. A section
  // that ends among them keeps the last next-header value it saw.
  for (let i = 0; i < MAX_IPV6_EXTENSIONS; i++) {
    switch (header) {
      case 0: // Hop-by-Hop Options
      case 43: // Routing
      case 60: // Destination Options
      case 135: // Mobility
      case 139: // HIP
      case 140: // Shim6
        if (end - q < 2) {
          out.proto = header;
          return SECTION_OK;
        }
        header = buf[q]!;
        q += (buf[q + 1]! + 1) * 8;
        continue;
      case 44: {
        // Fragment: 8 bytes; only the first fragment carries the transport header.
        if (end - q < 8) {
          out.proto = header;
          return SECTION_OK;
        }
        const offset = u16(buf, q + 2) >> 3;
        header = buf[q]!;
        q += 8;
        if (offset !== 0) {
          out.proto = header;
          return SECTION_OK;
        }
        continue;
      }
      case 51: // Authentication Header: its length counts 4-byte units, minus 2.
        if (end - q < 2) {
          out.proto = header;
          return SECTION_OK;
        }
        header = buf[q]!;
        q += (buf[q + 1]! + 2) * 4;
        continue;
      default:
        out.proto = header;
        transport(buf, q, end, out);
        return SECTION_OK;
    }
  }
  out.proto = header;
  return SECTION_OK;
}

/** Ports, TCP flags or ICMP type and code, as far as the section goes (absent ones stay 0). */
function transport(buf: Uint8Array, q: number, end: number, out: SectionHeaders): void {
  const proto = out.proto;
  // TCP, UDP, DCCP, SCTP and UDP-Lite all start with the source and destination ports.
  if (proto === 6 || proto === 17 || proto === 33 || proto === 132 || proto === 136) {
    if (end - q >= 4) {
      out.srcPort = u16(buf, q);
      out.dstPort = u16(buf, q + 2);
    }
    // RFC 7125: tcpControlBits holds the 12 bits after the data offset (reserved, NS ... FIN).
    if (proto === 6 && end - q >= 14) out.tcpFlags = ((buf[q + 12]! & 15) << 8) | buf[q + 13]!;
  } else if (proto === 1 || proto === 58) {
    if (end - q >= 2) {
      out.icmpType = buf[q]!;
      out.icmpCode = buf[q + 1]!;
    }
  }
}
