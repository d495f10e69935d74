import { closeSync, openSync, writeSync } from 'node:fs';
import { parseAddress } from '../../src/common/ip.js';

/**
 * Scripted packet traffic for detector tests and the detection scenario: the packets of scans,
 * brute force, floods, beacons, transfers and ordinary sessions, written as an Ethernet pcap that a
 * real exporter (softflowd -r) turns into NetFlow/IPFIX. Only headers are captured (caplen), with the
 * IP length fields and the pcap "original length" saying how big each packet was, so that an hour of
 * traffic from hundreds of hosts stays small on disk while exporters count the real sizes.
 *
 * Times are epoch microseconds. Packets may be added in any order; write() sorts them.
 */

export const TCP = 6;
export const UDP = 17;
export const ICMP = 1;
export const ICMPV6 = 58;
export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;

export interface TcpSessionSpec {
  /** Start (SYN) time, epoch µs. */
  readonly t: number;
  readonly client: string;
  readonly server: string;
  readonly sport: number;
  readonly dport: number;
  /** Request/response exchanges: bytes the client sends, bytes the server answers. */
  readonly exchanges?: ReadonlyArray<{ readonly up: number; readonly down: number }>;
  /** µs between packets (default 2 ms). */
  readonly gapUs?: number;
  /** µs between exchanges (default: gapUs). */
  readonly thinkUs?: number;
  /** How it ends (default fin). */
  readonly close?: 'fin' | 'rst' | 'none';
  /** Largest segment (default 1448). Bulk transfers can use up to 65,000 to keep packet counts small. */
  readonly mss?: number;
}

/** Growable store of captured packets: one time and one byte range each. */
export class TrafficBuilder {
  private times = new Float64Array(1024);
  private offsets = new Uint32Array(1025);
  private data = new Uint8Array(64 * 1024);
  private count = 0;

  get packets(): number {
    return this.count;
  }

  /** One packet: headers built here, `payload` bytes of (uncaptured) data after them. */
  packet(spec: {
    t: number;
    src: string;
    dst: string;
    proto: number;
    sport?: number;
    dport?: number;
    flags?: number;
    payload?: number;
    icmpType?: number;
    icmpCode?: number;
    tos?: number;
    ttl?: number;
  }): void {
    const src = this.address(spec.src);
    const dst = this.address(spec.dst);
    if (!src || !dst) throw new Error(`bad address ${spec.src} or ${spec.dst}`);
    const v4 = isMapped(src);
    if (v4 !== isMapped(dst)) throw new Error('source and destination must be the same family');
    const transportHeader = spec.proto === TCP ? 20 : 8;
    const ipHeader = v4 ? 20 : 40;
    const payload = spec.payload ?? 0;
    const frameHeader = 14 + ipHeader + transportHeader;
    const frame = new Uint8Array(frameHeader);
    const v = new DataView(frame.buffer);
    frame.set([0x02, 0, 0, 0, 0, 0xfe, 0x02, 0, 0, 0, 0, 0x01], 0);
    v.setUint16(12, v4 ? 0x0800 : 0x86dd);
    const ip = 14;
    const transportLength = transportHeader + payload;
    if (v4) {
      frame[ip] = 0x45;
      frame[ip + 1] = spec.tos ?? 0;
      v.setUint16(ip + 2, Math.min(65_535, 20 + transportLength));
      v.setUint16(ip + 4, this.count & 0xffff);
      v.setUint16(ip + 6, 0x4000);
      frame[ip + 8] = spec.ttl ?? 64;
      frame[ip + 9] = spec.proto;
      frame.set(src.subarray(12), ip + 12);
      frame.set(dst.subarray(12), ip + 16);
      v.setUint16(ip + 10, ipChecksum(frame.subarray(ip, ip + 20)));
    } else {
      v.setUint32(ip, 0x60000000 | ((spec.tos ?? 0) << 20));
      v.setUint16(ip + 4, Math.min(65_535, transportLength));
      frame[ip + 6] = spec.proto;
      frame[ip + 7] = spec.ttl ?? 64;
      frame.set(src, ip + 8);
      frame.set(dst, ip + 24);
    }
    const t = ip + ipHeader;
    if (spec.proto === TCP) {
      v.setUint16(t, spec.sport ?? 0);
      v.setUint16(t + 2, spec.dport ?? 0);
      v.setUint32(t + 4, (this.count * 7919) >>> 0);
      v.setUint32(t + 8, (spec.flags ?? 0) & ACK ? (this.count * 104729) >>> 0 : 0);
      frame[t + 12] = 5 << 4;
      frame[t + 13] = spec.flags ?? 0;
      v.setUint16(t + 14, 64240);
    } else if (spec.proto === UDP) {
      v.setUint16(t, spec.sport ?? 0);
      v.setUint16(t + 2, spec.dport ?? 0);
      v.setUint16(t + 4, Math.min(65_535, 8 + payload));
    } else {
      frame[t] = spec.icmpType ?? 8;
      frame[t + 1] = spec.icmpCode ?? 0;
      v.setUint16(t + 4, spec.sport ?? 1);
      v.setUint16(t + 6, spec.dport ?? 1);
    }
    this.add(spec.t, frame, 14 + ipHeader + transportLength);
  }

  private readonly addresses = new Map<string, Uint8Array | null>();

  /** Parsed addresses, cached (a scenario reuses a few thousand addresses millions of times). */
  private address(text: string): Uint8Array | null {
    let bytes = this.addresses.get(text);
    if (bytes === undefined) {
      if (this.addresses.size > 200_000) this.addresses.clear();
      bytes = parseAddress(text);
      this.addresses.set(text, bytes);
    }
    return bytes;
  }

  /**
   * The same packet captured at many times (a flood from one 5-tuple): its headers are built once,
   * so hundreds of thousands of packets stay cheap. The IP id and TCP sequence do not change between
   * the copies, which flow exporters do not look at.
   */
  packetTrain(spec: Omit<Parameters<TrafficBuilder['packet']>[0], 't'>, times: ArrayLike<number>): void {
    if (times.length === 0) return;
    this.packet({ ...spec, t: times[0]! });
    const start = this.offsets[this.count - 1]!;
    const end = this.offsets[this.count]! - 4;
    const frame = this.data.slice(start, end);
    const original = new DataView(this.data.buffer, end, 4).getUint32(0);
    for (let i = 1; i < times.length; i++) this.add(times[i]!, frame, original);
  }

  private add(timeUs: number, frame: Uint8Array, originalLength: number): void {
    if (this.count === this.times.length) {
      this.times = grow(this.times, this.times.length * 2);
      this.offsets = grow(this.offsets, this.offsets.length * 2);
    }
    const start = this.offsets[this.count]!;
    const need = start + frame.length + 4;
    if (need > this.data.length) this.data = grow(this.data, Math.max(need, this.data.length * 2));
    this.data.set(frame, start);
    new DataView(this.data.buffer, start + frame.length, 4).setUint32(0, originalLength);
    this.times[this.count] = Math.round(timeUs);
    this.offsets[this.count + 1] = need;
    this.count++;
  }

  /** A TCP conversation: handshake, exchanges, close. Returns the time of its last packet. */
  tcpSession(s: TcpSessionSpec): number {
    const gap = s.gapUs ?? 2_000;
    const think = s.thinkUs ?? gap;
    const mss = s.mss ?? 1448;
    let t = s.t;
    const step = (): number => {
      t += gap;
      return t;
    };
    const c = { src: s.client, dst: s.server, proto: TCP, sport: s.sport, dport: s.dport };
    const r = { src: s.server, dst: s.client, proto: TCP, sport: s.dport, dport: s.sport };
    this.packet({ ...c, t, flags: SYN });
    this.packet({ ...r, t: step(), flags: SYN | ACK });
    this.packet({ ...c, t: step(), flags: ACK });
    for (const [i, x] of (s.exchanges ?? []).entries()) {
      if (i > 0) t += think;
      for (let left = x.up, n = 0; left > 0; left -= mss, n++) {
        this.packet({ ...c, t: step(), flags: PSH | ACK, payload: Math.min(mss, left) });
        // Delayed ACKs: the receiver acknowledges every second segment (RFC 1122 §4.2.3.2).
        if (n % 2 === 1) this.packet({ ...r, t: t + gap / 2, flags: ACK });
      }
      for (let left = x.down, n = 0; left > 0; left -= mss, n++) {
        this.packet({ ...r, t: step(), flags: PSH | ACK, payload: Math.min(mss, left) });
        if (n % 2 === 1) this.packet({ ...c, t: t + gap / 2, flags: ACK });
      }
    }
    const close = s.close ?? 'fin';
    if (close === 'fin') {
      this.packet({ ...c, t: step(), flags: FIN | ACK });
      this.packet({ ...r, t: step(), flags: FIN | ACK });
      this.packet({ ...c, t: step(), flags: ACK });
    } else if (close === 'rst') {
      this.packet({ ...r, t: step(), flags: RST | ACK });
    }
    return t;
  }

  /**
   * A connection attempt: a SYN and what the target answers (nothing: filtered; rst: closed port;
   * synack: open port, which a half-open scanner then resets).
   */
  synProbe(
    t: number,
    src: string,
    dst: string,
    sport: number,
    dport: number,
    answer: 'none' | 'rst' | 'synack',
  ): void {
    this.packet({ t, src, dst, proto: TCP, sport, dport, flags: SYN });
    if (answer === 'rst')
      this.packet({
        t: t + 300,
        src: dst,
        dst: src,
        proto: TCP,
        sport: dport,
        dport: sport,
        flags: RST | ACK,
      });
    if (answer === 'synack') {
      this.packet({
        t: t + 300,
        src: dst,
        dst: src,
        proto: TCP,
        sport: dport,
        dport: sport,
        flags: SYN | ACK,
      });
      this.packet({ t: t + 600, src, dst, proto: TCP, sport, dport, flags: RST });
    }
  }

  /** UDP datagrams: a request and (optionally) an answer of the given sizes. */
  udpExchange(
    t: number,
    client: string,
    server: string,
    sport: number,
    dport: number,
    up: number,
    down: number | null,
  ): void {
    this.packet({ t, src: client, dst: server, proto: UDP, sport, dport, payload: up });
    if (down !== null)
      this.packet({
        t: t + 1_000,
        src: server,
        dst: client,
        proto: UDP,
        sport: dport,
        dport: sport,
        payload: down,
      });
  }

  /** ICMP(v6) echo request and, unless `reply` is false, its reply. */
  echo(t: number, src: string, dst: string, id: number, seq: number, size: number, reply = true): void {
    const v6 = src.includes(':');
    const [request, answer, proto] = v6 ? [128, 129, ICMPV6] : [8, 0, ICMP];
    this.packet({ t, src, dst, proto, icmpType: request, sport: id, dport: seq, payload: size });
    if (reply)
      this.packet({
        t: t + 500,
        src: dst,
        dst: src,
        proto,
        icmpType: answer,
        sport: id,
        dport: seq,
        payload: size,
      });
  }

  /** Writes the packets, in time order, as a pcap (LINKTYPE_ETHERNET, microseconds). */
  write(
    path: string,
    slice?: { fromUs: number; toUs: number },
  ): { packets: number; firstUs: number; lastUs: number } {
    let order = this.sorted();
    if (slice) order = order.filter((i) => this.times[i]! >= slice.fromUs && this.times[i]! < slice.toUs);
    const fd = openSync(path, 'w');
    try {
      const header = new Uint8Array(24);
      const hv = new DataView(header.buffer);
      hv.setUint32(0, 0xa1b2c3d4, true);
      hv.setUint16(4, 2, true);
      hv.setUint16(6, 4, true);
      hv.setUint32(16, 65_535, true);
      hv.setUint32(20, 1, true);
      writeSync(fd, header);
      const out = new Uint8Array(1 << 20);
      const ov = new DataView(out.buffer);
      let used = 0;
      for (const i of order) {
        const start = this.offsets[i]!;
        const end = this.offsets[i + 1]! - 4;
        const caplen = end - start;
        const original = new DataView(this.data.buffer, end, 4).getUint32(0);
        if (used + 16 + caplen > out.length) {
          writeSync(fd, out, 0, used);
          used = 0;
        }
        const t = this.times[i]!;
        ov.setUint32(used, Math.floor(t / 1e6), true);
        ov.setUint32(used + 4, t % 1e6, true);
        ov.setUint32(used + 8, caplen, true);
        ov.setUint32(used + 12, original, true);
        out.set(this.data.subarray(start, end), used + 16);
        used += 16 + caplen;
      }
      writeSync(fd, out, 0, used);
    } finally {
      closeSync(fd);
    }
    return {
      packets: order.length,
      firstUs: order.length > 0 ? this.times[order[0]!]! : 0,
      lastUs: order.length > 0 ? this.times[order[order.length - 1]!]! : 0,
    };
  }

  private order: Uint32Array | null = null;
  private orderedCount = -1;

  /** Packet indexes in time order (cached until packets are added). */
  private sorted(): Uint32Array {
    if (this.order && this.orderedCount === this.count) return this.order;
    const order = new Uint32Array(this.count);
    for (let i = 0; i < this.count; i++) order[i] = i;
    order.sort((a, b) => this.times[a]! - this.times[b]! || a - b);
    this.order = order;
    this.orderedCount = this.count;
    return order;
  }

  /** First and last packet times (epoch µs), 0 when empty. */
  get span(): { firstUs: number; lastUs: number } {
    const order = this.sorted();
    return order.length === 0
      ? { firstUs: 0, lastUs: 0 }
      : { firstUs: this.times[order[0]!]!, lastUs: this.times[order[order.length - 1]!]! };
  }
}

function isMapped(a: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return a[10] === 0xff && a[11] === 0xff;
}

function grow<T extends Float64Array | Uint32Array | Uint8Array>(a: T, size: number): T {
  const next = new (a.constructor as new (n: number) => T)(size);
  next.set(a);
  return next;
}

function ipChecksum(header: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < header.length; i += 2) sum += (header[i]! << 8) | header[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}
