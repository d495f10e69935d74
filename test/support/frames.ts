import { parseAddress } from '../../src/common/ip.js';

/**
 * Builds link-layer frames and packet headers byte by byte (IEEE 802.3/802.1Q, MPLS per RFC 3032,
 * pseudowire control word per RFC 4385, IPv4 per RFC 791, IPv6 and its extension headers per RFC
 * 8200, TCP, UDP, ICMP), for tests of packet sections. Lengths and checksums are filled in.
 */

export type Bytes = readonly number[];

const mac = (text: string): number[] => text.split(':').map((h) => Number.parseInt(h, 16));

export function ethernet(dst: string, src: string, etherType: number, payload: Bytes): number[] {
  return [...mac(dst), ...mac(src), etherType >> 8, etherType & 255, ...payload];
}

/** An 802.1Q (0x8100) or 802.1ad (0x88a8) tag in front of `payload` (which starts with its ethertype). */
export function vlanTag(vid: number, pcp = 0): number[] {
  return [(pcp << 5) | (vid >> 8), vid & 255];
}

/** An MPLS label stack; the bottom-of-stack bit is set on the last entry. */
export function mplsStack(labels: readonly number[], ttl = 64): number[] {
  const out: number[] = [];
  labels.forEach((label, i) => {
    const bottom = i === labels.length - 1 ? 1 : 0;
    out.push((label >> 12) & 255, (label >> 4) & 255, ((label & 15) << 4) | bottom, ttl);
  });
  return out;
}

/** The generic pseudowire control word (RFC 4385): first nibble 0, a sequence number. */
export function controlWord(sequence = 1): number[] {
  return [0, 0, sequence >> 8, sequence & 255];
}

function address(text: string, length: 4 | 16): number[] {
  const bytes = parseAddress(text);
  if (!bytes) throw new Error(`not an address: ${text}`);
  return [...(length === 4 ? bytes.subarray(12) : bytes)];
}

function checksum(bytes: Bytes): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i]! << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export function ipv4(options: {
  src: string;
  dst: string;
  proto: number;
  payload: Bytes;
  tos?: number;
  ttl?: number;
  /** Fragment offset in 8-byte units. */
  fragmentOffset?: number;
  /** IP options, a multiple of 4 bytes. */
  ipOptions?: Bytes;
  /** Total length of the original packet when `payload` is only its start. */
  totalLength?: number;
}): number[] {
  const opts = options.ipOptions ?? [];
  const headerLength = 20 + opts.length;
  const total = options.totalLength ?? headerLength + options.payload.length;
  const frag = options.fragmentOffset ?? 0;
  const header = [
    0x40 | (headerLength / 4),
    options.tos ?? 0,
    total >> 8,
    total & 255,
    0x12,
    0x34,
    (frag >> 8) & 0x1f,
    frag & 255,
    options.ttl ?? 64,
    options.proto,
    0,
    0,
    ...address(options.src, 4),
    ...address(options.dst, 4),
    ...opts,
  ];
  const sum = checksum(header);
  header[10] = sum >> 8;
  header[11] = sum & 255;
  return [...header, ...options.payload];
}

export function ipv6(options: {
  src: string;
  dst: string;
  next: number;
  payload: Bytes;
  trafficClass?: number;
  flowLabel?: number;
  payloadLength?: number;
}): number[] {
  const tc = options.trafficClass ?? 0;
  const label = options.flowLabel ?? 0;
  const length = options.payloadLength ?? options.payload.length;
  return [
    0x60 | (tc >> 4),
    ((tc & 15) << 4) | ((label >> 16) & 15),
    (label >> 8) & 255,
    label & 255,
    length >> 8,
    length & 255,
    options.next,
    64,
    ...address(options.src, 16),
    ...address(options.dst, 16),
    ...options.payload,
  ];
}

/** A Hop-by-Hop, Routing or Destination Options header: next header, length in 8-byte units - 1. */
export function ipv6Options(next: number, body: Bytes = [1, 4, 0, 0, 0, 0]): number[] {
  const padded = [...body];
  while ((padded.length + 2) % 8 !== 0) padded.push(0);
  return [next, (padded.length + 2) / 8 - 1, ...padded];
}

/** An IPv6 Fragment header (8 bytes); offset in 8-byte units. */
export function ipv6Fragment(next: number, offset: number, more: boolean, id = 0x01020304): number[] {
  return [
    next,
    0,
    (offset >> 5) & 255,
    ((offset & 31) << 3) | (more ? 1 : 0),
    (id >>> 24) & 255,
    (id >> 16) & 255,
    (id >> 8) & 255,
    id & 255,
  ];
}

export function tcp(srcPort: number, dstPort: number, flags: number, payload: Bytes = []): number[] {
  return [
    srcPort >> 8,
    srcPort & 255,
    dstPort >> 8,
    dstPort & 255,
    0,
    0,
    0,
    1,
    0,
    0,
    0,
    0,
    0x50 | ((flags >> 8) & 15),
    flags & 255,
    0xff,
    0xff,
    0,
    0,
    0,
    0,
    ...payload,
  ];
}

export function udp(srcPort: number, dstPort: number, payload: Bytes = []): number[] {
  const length = 8 + payload.length;
  return [
    srcPort >> 8,
    srcPort & 255,
    dstPort >> 8,
    dstPort & 255,
    length >> 8,
    length & 255,
    0,
    0,
    ...payload,
  ];
}

/** ICMP or ICMPv6 header: type, code, checksum (left 0), 4 bytes of rest-of-header. */
export function icmp(type: number, code: number): number[] {
  return [type, code, 0, 0, 0, 1, 0, 1];
}
