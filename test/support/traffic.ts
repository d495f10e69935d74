import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Synthetic traffic for the real-exporter tests: TCP conversations (handshake, data, FIN or RST),
 * lone SYNs, UDP request/response and one-way streams, ICMP and ICMPv6 echo, over IPv4 and IPv6,
 * written as an Ethernet pcap with microsecond timestamps. Everything is derived from a seeded PRNG, so
 * the same seed gives the same file byte for byte.
 */

/** One unidirectional flow as a flow exporter keys it: the packets from src to dst on one 5-tuple. */
export interface TruthFlow {
  readonly family: 4 | 6;
  readonly src: string;
  readonly dst: string;
  /** 0 for ICMP. */
  readonly sport: number;
  /** For ICMP, type * 256 + code (the convention of Cisco, softflowd and Wireshark). */
  readonly dport: number;
  readonly proto: number;
  packets: number;
  /** IP bytes: IPv4 total length, or the IPv6 payload length plus the 40-byte header. */
  bytes: number;
  /** Capture times of the first and last packet, epoch microseconds. */
  firstUs: number;
  lastUs: number;
  /**
   * First and last packet of this flow and its reverse (same protocol, addresses and ports swapped)
   * together. softflowd and pmacct's nfprobe (derived from softflowd) keep one entry per bidirectional
   * flow with a single start and end time, and export those times in the records of both directions.
   * ICMP echo requests and replies are not each other's reverse there (the type is in the port).
   */
  biFirstUs: number;
  biLastUs: number;
}

export interface Traffic {
  readonly path: string;
  /** Every unidirectional flow, in order of first packet. */
  readonly flows: readonly TruthFlow[];
  readonly packets: number;
  readonly firstUs: number;
  readonly lastUs: number;
}

/** 2024-03-05 07:41:12.345678 UTC: a fixed date in the past, with a sub-millisecond part on purpose. */
export const TRAFFIC_BASE_US = Date.UTC(2024, 2, 5, 7, 41, 12) * 1000 + 345_678;

const TCP = 6;
const UDP = 17;
const ICMP = 1;
const ICMPV6 = 58;
const SYN = 0x02;
const ACK = 0x10;
const PSH = 0x08;
const FIN = 0x01;
const RST = 0x04;

interface Packet {
  readonly timeUs: number;
  readonly order: number;
  readonly frame: Uint8Array;
}

interface Endpoint {
  readonly family: 4 | 6;
  readonly address: string;
}

/** mulberry32: small, fast and good enough to vary sizes and timings reproducibly. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Builds the capture and its ground truth into `dir`. */
export function generateTraffic(
  dir: string,
  options: { seed?: number; conversations?: number } = {},
): Traffic {
  const random = prng(options.seed ?? 20240305);
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const packets: Packet[] = [];
  const truth = new Map<string, TruthFlow>();
  let order = 0;

  const emit = (
    timeUs: number,
    from: Endpoint,
    to: Endpoint,
    proto: number,
    sport: number,
    dport: number,
    transport: Uint8Array,
  ) => {
    const frame = ipFrame(from, to, proto, transport, order);
    const ipBytes = frame.byteLength - 14;
    packets.push({ timeUs, order: order++, frame });
    const key = `${from.address}|${to.address}|${proto}|${sport}|${dport}`;
    const flow = truth.get(key);
    if (flow) {
      flow.packets++;
      flow.bytes += ipBytes;
      flow.firstUs = Math.min(flow.firstUs, timeUs);
      flow.lastUs = Math.max(flow.lastUs, timeUs);
    } else {
      truth.set(key, {
        family: from.family,
        src: from.address,
        dst: to.address,
        sport,
        dport,
        proto,
        packets: 1,
        bytes: ipBytes,
        firstUs: timeUs,
        lastUs: timeUs,
        biFirstUs: timeUs,
        biLastUs: timeUs,
      });
    }
  };

  // Addresses: clients in 10.1.0.0/16 and 2001:db8:c::/64, servers in documentation ranges. Each
  // conversation gets its own client address and port, so no two share a 5-tuple (ICMP flows are keyed
  // by address pair and type only, so their client addresses must differ too).
  let clientSerial = 0;
  const client = (family: 4 | 6): Endpoint => {
    clientSerial++;
    return family === 4
      ? { family, address: `10.1.${clientSerial >> 8}.${clientSerial & 255}` }
      : { family, address: `2001:db8:c::${clientSerial.toString(16)}` };
  };
  const servers4 = ['192.0.2.10', '192.0.2.53', '198.51.100.7', '198.51.100.80', '203.0.113.25'];
  const servers6 = ['2001:db8:5::10', '2001:db8:5::53', '2001:db8:80::1'];
  const server = (family: 4 | 6): Endpoint => ({
    family,
    address: family === 4 ? pick(servers4) : pick(servers6),
  });

  const conversations = options.conversations ?? 260;
  for (let n = 0; n < conversations; n++) {
    const family: 4 | 6 = random() < 0.2 ? 6 : 4;
    const c = client(family);
    const s = server(family);
    // Conversations start in the first 30 s and last up to ~12 s, so the capture spans about 45 s.
    let t = TRAFFIC_BASE_US + int(0, 30_000_000);
    const step = () => {
      t += int(200, 400_000);
      return t;
    };
    const kind = random();
    if (kind < 0.5) {
      // TCP: handshake, request/response exchanges, then FIN/FIN/ACK or a reset.
      const cport = int(32768, 60999);
      const sport = pick([22, 80, 443, 8080]);
      let cseq = int(0, 2 ** 31);
      let sseq = int(0, 2 ** 31);
      const toServer = (flags: number, size: number) => {
        emit(step(), c, s, TCP, cport, sport, tcpSegment(c, s, cport, sport, cseq, sseq, flags, size));
        cseq = (cseq + size + (flags & (SYN | FIN) ? 1 : 0)) >>> 0;
      };
      const toClient = (flags: number, size: number) => {
        emit(step(), s, c, TCP, sport, cport, tcpSegment(s, c, sport, cport, sseq, cseq, flags, size));
        sseq = (sseq + size + (flags & (SYN | FIN) ? 1 : 0)) >>> 0;
      };
      toServer(SYN, 0);
      toClient(SYN | ACK, 0);
      toServer(ACK, 0);
      for (let i = int(0, 12); i > 0; i--) {
        toServer(PSH | ACK, int(1, 700));
        for (let j = int(1, 6); j > 0; j--) toClient(j === 1 ? PSH | ACK : ACK, int(0, 1448));
        if (random() < 0.5) toServer(ACK, 0);
      }
      if (random() < 0.75) {
        toServer(FIN | ACK, 0);
        toClient(FIN | ACK, 0);
        toServer(ACK, 0);
      } else if (random() < 0.5) {
        toClient(RST, 0);
      } else {
        toServer(RST | ACK, 0);
      }
    } else if (kind < 0.58) {
      // A SYN that is never answered (a scan): a one-packet flow with no reverse direction.
      const cport = int(32768, 60999);
      const sport = int(1, 1024);
      emit(step(), c, s, TCP, cport, sport, tcpSegment(c, s, cport, sport, int(0, 2 ** 31), 0, SYN, 0, true));
    } else if (kind < 0.78) {
      // UDP request/response (DNS, NTP, a game): some requests go unanswered.
      const cport = int(32768, 60999);
      const sport = pick([53, 123, 27015]);
      for (let i = int(1, 8); i > 0; i--) {
        emit(step(), c, s, UDP, cport, sport, udpDatagram(c, s, cport, sport, int(12, 300)));
        if (random() < 0.8)
          emit(step(), s, c, UDP, sport, cport, udpDatagram(s, c, sport, cport, int(12, 1200)));
      }
    } else if (kind < 0.86) {
      // One-way UDP stream (syslog, RTP): many packets, no reply.
      const cport = int(32768, 60999);
      const sport = pick([514, 5004]);
      const size = int(60, 1400);
      for (let i = int(5, 60); i > 0; i--) {
        t += int(1000, 150_000);
        emit(t, c, s, UDP, cport, sport, udpDatagram(c, s, cport, sport, size + int(-20, 20)));
      }
    } else {
      // Echo request/reply; type * 256 + code is the flow's destination port.
      const id = int(1, 65535);
      const size = int(8, 1000);
      const [request, reply, proto] = family === 4 ? [8, 0, ICMP] : [128, 129, ICMPV6];
      for (let seq = 1, count = int(1, 10); seq <= count; seq++) {
        emit(step(), c, s, proto, 0, request * 256, echo(c, s, request, id, seq, size));
        if (random() < 0.85) emit(step(), s, c, proto, 0, reply * 256, echo(s, c, reply, id, seq, size));
      }
    }
  }

  packets.sort((a, b) => a.timeUs - b.timeUs || a.order - b.order);
  const path = join(dir, 'traffic.pcap');
  writeFileSync(path, pcapFile(packets));
  const flows = [...truth.values()].sort((a, b) => a.firstUs - b.firstUs);
  for (const flow of flows) {
    const reverse = truth.get(`${flow.dst}|${flow.src}|${flow.proto}|${flow.dport}|${flow.sport}`);
    flow.biFirstUs = Math.min(flow.firstUs, reverse?.firstUs ?? flow.firstUs);
    flow.biLastUs = Math.max(flow.lastUs, reverse?.lastUs ?? flow.lastUs);
  }
  return {
    path,
    flows,
    packets: packets.length,
    firstUs: packets[0]!.timeUs,
    lastUs: packets[packets.length - 1]!.timeUs,
  };
}

function pcapFile(packets: readonly Packet[]): Uint8Array {
  let size = 24;
  for (const p of packets) size += 16 + p.frame.byteLength;
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0xa1b2c3d4, true);
  v.setUint16(4, 2, true);
  v.setUint16(6, 4, true);
  v.setUint32(16, 65535, true);
  v.setUint32(20, 1, true); // LINKTYPE_ETHERNET
  let o = 24;
  for (const p of packets) {
    v.setUint32(o, Math.floor(p.timeUs / 1e6), true);
    v.setUint32(o + 4, p.timeUs % 1e6, true);
    v.setUint32(o + 8, p.frame.byteLength, true);
    v.setUint32(o + 12, p.frame.byteLength, true);
    out.set(p.frame, o + 16);
    o += 16 + p.frame.byteLength;
  }
  return out;
}

function addressBytes(e: Endpoint): Uint8Array {
  if (e.family === 4) return Uint8Array.from(e.address.split('.').map(Number));
  const [head, tail] = e.address.split('::') as [string, string | undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = Number.parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 255;
  });
  return out;
}

/** The ones' complement sum of RFC 1071, over the pseudo-header (if any) and the data. */
function checksum(parts: readonly Uint8Array[]): number {
  let sum = 0;
  for (const part of parts) {
    for (let i = 0; i < part.byteLength; i += 2) sum += (part[i]! << 8) | (part[i + 1] ?? 0);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function pseudoHeader(from: Endpoint, to: Endpoint, proto: number, length: number): Uint8Array {
  const src = addressBytes(from);
  const dst = addressBytes(to);
  if (from.family === 4) {
    const p = new Uint8Array(12);
    p.set(src, 0);
    p.set(dst, 4);
    p[9] = proto;
    new DataView(p.buffer).setUint16(10, length);
    return p;
  }
  const p = new Uint8Array(40);
  p.set(src, 0);
  p.set(dst, 16);
  new DataView(p.buffer).setUint32(32, length);
  p[39] = proto;
  return p;
}

/** Payload bytes that are not all zero, so checksums and captures look like real data. */
function payload(size: number, salt: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + salt) & 255;
  return out;
}

function tcpSegment(
  from: Endpoint,
  to: Endpoint,
  sport: number,
  dport: number,
  seq: number,
  ack: number,
  flags: number,
  size: number,
  scan = false,
): Uint8Array {
  const seg = new Uint8Array(20 + size);
  const v = new DataView(seg.buffer);
  v.setUint16(0, sport);
  v.setUint16(2, dport);
  v.setUint32(4, seq);
  v.setUint32(8, flags & ACK ? ack : 0);
  seg[12] = 5 << 4;
  seg[13] = flags;
  v.setUint16(14, scan ? 1024 : 64240);
  seg.set(payload(size, seq & 255), 20);
  return withChecksum(seg, 16, from, to, TCP);
}

function udpDatagram(from: Endpoint, to: Endpoint, sport: number, dport: number, size: number): Uint8Array {
  const d = new Uint8Array(8 + size);
  const v = new DataView(d.buffer);
  v.setUint16(0, sport);
  v.setUint16(2, dport);
  v.setUint16(4, 8 + size);
  d.set(payload(size, sport & 255), 8);
  const sum = checksum([pseudoHeader(from, to, UDP, d.byteLength), d]);
  v.setUint16(6, sum === 0 ? 0xffff : sum);
  return d;
}

function echo(from: Endpoint, to: Endpoint, type: number, id: number, seq: number, size: number): Uint8Array {
  const m = new Uint8Array(8 + size);
  const v = new DataView(m.buffer);
  m[0] = type;
  v.setUint16(4, id);
  v.setUint16(6, seq);
  m.set(payload(size, id & 255), 8);
  // ICMPv4 sums the message alone; ICMPv6 includes the pseudo-header.
  const sum = from.family === 4 ? checksum([m]) : checksum([pseudoHeader(from, to, ICMPV6, m.byteLength), m]);
  v.setUint16(2, sum);
  return m;
}

function withChecksum(seg: Uint8Array, at: number, from: Endpoint, to: Endpoint, proto: number): Uint8Array {
  new DataView(seg.buffer).setUint16(at, checksum([pseudoHeader(from, to, proto, seg.byteLength), seg]));
  return seg;
}

function ipFrame(from: Endpoint, to: Endpoint, proto: number, transport: Uint8Array, id: number): Uint8Array {
  const ipHeader = from.family === 4 ? 20 : 40;
  const frame = new Uint8Array(14 + ipHeader + transport.byteLength);
  const v = new DataView(frame.buffer);
  // Locally administered MACs: the client side and the router.
  frame.set([0x02, 0, 0, 0, 0, 0xfe, 0x02, 0, 0, 0, 0, 0x01], 0);
  v.setUint16(12, from.family === 4 ? 0x0800 : 0x86dd);
  const ip = 14;
  if (from.family === 4) {
    frame[ip] = 0x45;
    v.setUint16(ip + 2, 20 + transport.byteLength);
    v.setUint16(ip + 4, id & 0xffff);
    v.setUint16(ip + 6, 0x4000); // don't fragment
    frame[ip + 8] = 64;
    frame[ip + 9] = proto;
    frame.set(addressBytes(from), ip + 12);
    frame.set(addressBytes(to), ip + 16);
    v.setUint16(ip + 10, checksum([frame.subarray(ip, ip + 20)]));
  } else {
    v.setUint32(ip, 0x60000000);
    v.setUint16(ip + 4, transport.byteLength);
    frame[ip + 6] = proto;
    frame[ip + 7] = 64;
    frame.set(addressBytes(from), ip + 8);
    frame.set(addressBytes(to), ip + 24);
  }
  frame.set(transport, ip + ipHeader);
  return frame;
}
