import { readFileSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { FlowsentryError } from '../common/errors.js';

/** One UDP datagram from a capture. */
export interface UdpDatagram {
  /** Capture time, epoch milliseconds. */
  readonly timeMs: number;
  readonly srcAddress: string;
  readonly dstAddress: string;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly payload: Uint8Array;
}

export interface CaptureStats {
  frames: number;
  udp: number;
  /** Frames that are not UDP over IPv4/IPv6, IPv4 fragments, or cut short by the snap length. */
  skipped: number;
}

const LINKTYPE_NULL = 0;
const LINKTYPE_ETHERNET = 1;
const LINKTYPE_RAW = 101;
const LINKTYPE_LINUX_SLL = 113;
const LINKTYPE_IPV4 = 228;
const LINKTYPE_IPV6 = 229;
const LINKTYPE_LINUX_SLL2 = 276;

/** Largest pcap record or pcapng block accepted: a larger length field is a corrupt capture. */
export const MAX_CAPTURE_RECORD = 16 << 20;

/**
 * Reads the UDP datagrams of a pcap or pcapng file (Ethernet with VLAN tags, Linux cooked v1/v2, raw
 * IP, BSD loopback; IPv4 and IPv6), in capture order, all in memory: for small captures (tests, the
 * `decode` of a fixture). Large captures go through streamUdpDatagrams.
 */
export function readUdpDatagrams(path: string, stats?: CaptureStats): UdpDatagram[] {
  let file: Buffer;
  try {
    file = readFileSync(path);
  } catch (error) {
    throw new FlowsentryError('PCAP_INVALID', `cannot read ${path}: ${(error as Error).message}`);
  }
  return parseCapture(new Uint8Array(file.buffer, file.byteOffset, file.byteLength), path, stats);
}

export function parseCapture(bytes: Uint8Array, name = 'capture', stats?: CaptureStats): UdpDatagram[] {
  const out: UdpDatagram[] = [];
  const parser = new CaptureParser(name, stats);
  parser.feed(bytes, (d) => out.push(d));
  parser.end();
  return out;
}

export interface StreamOptions {
  readonly stats?: CaptureStats;
  /** Bytes read at a time (default 1 MiB). */
  readonly chunkBytes?: number;
  /** Only the datagrams this accepts are copied and returned (e.g. a port filter). */
  readonly filter?: (d: UdpDatagram) => boolean;
  /** Called after every chunk with the bytes read so far and the file size. */
  readonly onProgress?: (readBytes: number, totalBytes: number) => void;
}

/**
 * The UDP datagrams of a pcap or pcapng file read a chunk at a time: memory holds one chunk and the
 * datagrams of that chunk, whatever the size of the capture. Each payload is a copy, so a consumer may
 * keep it.
 */
export async function* streamUdpDatagrams(
  path: string,
  options: StreamOptions = {},
): AsyncGenerator<UdpDatagram> {
  let handle: FileHandle;
  let size: number;
  try {
    handle = await open(path, 'r');
    size = (await handle.stat()).size;
  } catch (error) {
    throw new FlowsentryError('PCAP_INVALID', `cannot read ${path}: ${(error as Error).message}`);
  }
  try {
    const parser = new CaptureParser(path, options.stats);
    // A plain Uint8Array over the read buffer: Buffer's slice() is a view, not the copy needed here.
    const buffer = Buffer.allocUnsafe(options.chunkBytes ?? 1 << 20);
    const chunk = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    const ready: UdpDatagram[] = [];
    const filter = options.filter;
    const collect = (d: UdpDatagram) => {
      if (!filter || filter(d)) ready.push({ ...d, payload: copy(d.payload, 0) });
    };
    let read = 0;
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.byteLength, read);
      if (bytesRead === 0) break;
      read += bytesRead;
      parser.feed(chunk.subarray(0, bytesRead), collect);
      options.onProgress?.(read, size);
      for (const d of ready) yield d;
      ready.length = 0;
    }
    parser.end();
  } finally {
    await handle.close();
  }
}

/** A copy (Uint8Array.prototype.slice: on a Buffer, slice() would return a view). */
function copy(bytes: Uint8Array, from: number): Uint8Array {
  return Uint8Array.prototype.slice.call(bytes, from);
}

type Push = (linktype: number, timeMs: number, frame: Uint8Array, originalLength: number) => void;

/**
 * An incremental pcap/pcapng parser: feed() takes the capture in pieces of any size and emits the UDP
 * datagrams of every complete record; what is left of a record waits for the next piece (copied, so the
 * caller may reuse its buffer). The datagrams emitted by a feed() point into that piece's bytes.
 */
export class CaptureParser {
  private pending: Uint8Array = new Uint8Array(0);
  private format: 'pcap' | 'pcapng' | null = null;
  private little = true;
  private nanos = false;
  private linktype = 0;
  private interfaces: Array<{ linktype: number; unitsPerSecond: number }> = [];
  /** Offset in the capture of pending[0], for messages. */
  private offset = 0;
  private readonly stats: CaptureStats;

  constructor(
    private readonly name: string,
    stats?: CaptureStats,
  ) {
    this.stats = stats ?? { frames: 0, udp: 0, skipped: 0 };
  }

  feed(piece: Uint8Array, emit: (d: UdpDatagram) => void): void {
    let bytes = piece;
    if (this.pending.byteLength > 0) {
      bytes = new Uint8Array(this.pending.byteLength + piece.byteLength);
      bytes.set(this.pending);
      bytes.set(piece, this.pending.byteLength);
    }
    const s = this.stats;
    const push: Push = (linktype, timeMs, frame, originalLength) => {
      s.frames++;
      const d = frame.byteLength < originalLength ? null : udpFromFrame(linktype, frame, timeMs);
      if (d) {
        s.udp++;
        emit(d);
      } else {
        s.skipped++;
      }
    };
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let p = 0;
    if (this.format === null) {
      if (bytes.byteLength < 24) {
        this.keep(bytes, 0);
        return;
      }
      p = this.header(view);
    }
    p = this.format === 'pcap' ? this.records(bytes, view, p, push) : this.blocks(bytes, view, p, push);
    this.keep(bytes, p);
  }

  /** The capture is complete: a cut pcapng block is an error; a cut last pcap record is ignored. */
  end(): void {
    if (this.format === null)
      throw new FlowsentryError('PCAP_INVALID', `${this.name}: too short to be a capture`);
    if (this.format === 'pcapng' && this.pending.byteLength >= 12) {
      throw new FlowsentryError(
        'PCAP_INVALID',
        `${this.name}: truncated pcapng block at byte ${this.offset}`,
      );
    }
  }

  private keep(bytes: Uint8Array, consumed: number): void {
    this.offset += consumed;
    this.pending = copy(bytes, consumed);
  }

  private header(view: DataView): number {
    const magic = view.getUint32(0, true);
    if (magic === 0x0a0d0d0a) {
      this.format = 'pcapng';
      return 0;
    }
    switch (magic) {
      case 0xa1b2c3d4:
        this.little = true;
        this.nanos = false;
        break;
      case 0xa1b23c4d:
        this.little = true;
        this.nanos = true;
        break;
      case 0xd4c3b2a1:
        this.little = false;
        this.nanos = false;
        break;
      case 0x4d3cb2a1:
        this.little = false;
        this.nanos = true;
        break;
      default:
        throw new FlowsentryError('PCAP_INVALID', `${this.name}: not a pcap or pcapng file`);
    }
    this.format = 'pcap';
    this.linktype = view.getUint32(20, this.little) & 0x0fffffff;
    return 24;
  }

  private records(bytes: Uint8Array, view: DataView, from: number, push: Push): number {
    const little = this.little;
    let p = from;
    while (bytes.byteLength - p >= 16) {
      const seconds = view.getUint32(p, little);
      const fraction = view.getUint32(p + 4, little);
      const captured = view.getUint32(p + 8, little);
      const original = view.getUint32(p + 12, little);
      if (captured > MAX_CAPTURE_RECORD) {
        throw new FlowsentryError(
          'PCAP_INVALID',
          `${this.name}: a record of ${captured} bytes at byte ${this.offset + p} (corrupt capture)`,
        );
      }
      if (captured > bytes.byteLength - p - 16) break;
      push(
        this.linktype,
        seconds * 1000 + Math.floor(this.nanos ? fraction / 1e6 : fraction / 1e3),
        bytes.subarray(p + 16, p + 16 + captured),
        original,
      );
      p += 16 + captured;
    }
    return p;
  }

  private blocks(bytes: Uint8Array, view: DataView, from: number, push: Push): number {
    let p = from;
    while (bytes.byteLength - p >= 12) {
      let type = view.getUint32(p, this.little);
      if (view.getUint32(p, true) === 0x0a0d0d0a) {
        // Section header: its byte-order magic decides how the rest of the section reads.
        this.little = view.getUint32(p + 8, true) === 0x1a2b3c4d;
        this.interfaces = [];
        type = 0x0a0d0d0a;
      }
      const little = this.little;
      const length = view.getUint32(p + 4, little);
      if (length < 12 || length > MAX_CAPTURE_RECORD) {
        throw new FlowsentryError(
          'PCAP_INVALID',
          `${this.name}: truncated pcapng block at byte ${this.offset + p}`,
        );
      }
      if (length > bytes.byteLength - p) break;
      if (type === 1) {
        let unitsPerSecond = 1e6;
        // Options: if_tsresol (code 9).
        let o = p + 16;
        while (o + 4 <= p + length - 4) {
          const code = view.getUint16(o, little);
          const len = view.getUint16(o + 2, little);
          if (code === 0) break;
          if (code === 9 && len >= 1) {
            const r = bytes[o + 4]!;
            unitsPerSecond = r & 0x80 ? 2 ** (r & 0x7f) : 10 ** r;
          }
          o += 4 + ((len + 3) & ~3);
        }
        this.interfaces.push({ linktype: view.getUint16(p + 8, little), unitsPerSecond });
      } else if (type === 6) {
        const iface = this.interfaces[view.getUint32(p + 8, little)];
        if (iface) {
          const ts = view.getUint32(p + 12, little) * 2 ** 32 + view.getUint32(p + 16, little);
          const captured = view.getUint32(p + 20, little);
          const original = view.getUint32(p + 24, little);
          const start = p + 28;
          if (captured <= length - 32) {
            push(
              iface.linktype,
              Math.floor((ts / iface.unitsPerSecond) * 1000),
              bytes.subarray(start, start + captured),
              original,
            );
          }
        }
      } else if (type === 3) {
        const iface = this.interfaces[0];
        const original = view.getUint32(p + 8, little);
        const captured = Math.min(original, length - 16);
        if (iface) push(iface.linktype, 0, bytes.subarray(p + 12, p + 12 + captured), original);
      }
      p += length;
    }
    return p;
  }
}

function udpFromFrame(linktype: number, frame: Uint8Array, timeMs: number): UdpDatagram | null {
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  let off: number;
  let ethertype = -1;
  switch (linktype) {
    case LINKTYPE_ETHERNET: {
      if (frame.byteLength < 14) return null;
      off = 12;
      ethertype = v.getUint16(off);
      off += 2;
      while ((ethertype === 0x8100 || ethertype === 0x88a8) && frame.byteLength >= off + 4) {
        ethertype = v.getUint16(off + 2);
        off += 4;
      }
      break;
    }
    case LINKTYPE_LINUX_SLL:
      if (frame.byteLength < 16) return null;
      ethertype = v.getUint16(14);
      off = 16;
      break;
    case LINKTYPE_LINUX_SLL2:
      if (frame.byteLength < 20) return null;
      ethertype = v.getUint16(0);
      off = 20;
      break;
    case LINKTYPE_NULL:
      if (frame.byteLength < 4) return null;
      off = 4;
      break;
    case LINKTYPE_RAW:
    case LINKTYPE_IPV4:
    case LINKTYPE_IPV6:
      off = 0;
      break;
    default:
      return null;
  }
  if (frame.byteLength < off + 1) return null;
  const ipVersion = frame[off]! >> 4;
  if (ethertype !== -1 && !(ethertype === 0x0800 || ethertype === 0x86dd)) return null;
  let src: string;
  let dst: string;
  let udp: number;
  let udpEnd: number;
  if (ipVersion === 4) {
    if (frame.byteLength < off + 20) return null;
    const ihl = (frame[off]! & 15) * 4;
    const total = v.getUint16(off + 2);
    const flagsFragment = v.getUint16(off + 6);
    if (frame[off + 9] !== 17 || (flagsFragment & 0x3fff) !== 0) return null; // not UDP, or a fragment
    src = `${frame[off + 12]}.${frame[off + 13]}.${frame[off + 14]}.${frame[off + 15]}`;
    dst = `${frame[off + 16]}.${frame[off + 17]}.${frame[off + 18]}.${frame[off + 19]}`;
    udp = off + ihl;
    udpEnd = Math.min(off + total, frame.byteLength);
  } else if (ipVersion === 6) {
    if (frame.byteLength < off + 40 || frame[off + 6] !== 17) return null; // extension headers not followed
    src = ipv6Text(frame, off + 8);
    dst = ipv6Text(frame, off + 24);
    udp = off + 40;
    udpEnd = Math.min(udp + v.getUint16(off + 4), frame.byteLength);
  } else {
    return null;
  }
  if (udpEnd - udp < 8) return null;
  const length = v.getUint16(udp + 4);
  if (length < 8 || udp + length > udpEnd) return null;
  return {
    timeMs,
    srcAddress: src,
    dstAddress: dst,
    srcPort: v.getUint16(udp),
    dstPort: v.getUint16(udp + 2),
    payload: frame.subarray(udp + 8, udp + length),
  };
}

function ipv6Text(b: Uint8Array, off: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[off + i]! << 8) | b[off + i + 1]!).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/**
 * Writes UDP datagrams as an Ethernet/IPv4 pcap (microsecond timestamps): for test and benchmark
 * captures. IPv4 only.
 */
export function writeUdpPcap(
  datagrams: ReadonlyArray<Omit<UdpDatagram, 'timeMs'> & { timeMs: number }>,
): Uint8Array {
  let size = 24;
  for (const d of datagrams) size += 16 + 14 + 20 + 8 + d.payload.byteLength;
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0xa1b2c3d4, true);
  v.setUint16(4, 2, true);
  v.setUint16(6, 4, true);
  v.setUint32(16, 262144, true);
  v.setUint32(20, LINKTYPE_ETHERNET, true);
  let p = 24;
  for (const d of datagrams) {
    const frameLength = 14 + 20 + 8 + d.payload.byteLength;
    v.setUint32(p, Math.floor(d.timeMs / 1000), true);
    v.setUint32(p + 4, (d.timeMs % 1000) * 1000, true);
    v.setUint32(p + 8, frameLength, true);
    v.setUint32(p + 12, frameLength, true);
    p += 16;
    // Ethernet: locally administered MACs, IPv4.
    out.set([0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00], p);
    p += 14;
    const ip = p;
    out[ip] = 0x45;
    v.setUint16(ip + 2, 20 + 8 + d.payload.byteLength);
    out[ip + 8] = 64;
    out[ip + 9] = 17;
    out.set(d.srcAddress.split('.').map(Number), ip + 12);
    out.set(d.dstAddress.split('.').map(Number), ip + 16);
    let sum = 0;
    for (let i = 0; i < 20; i += 2) sum += v.getUint16(ip + i);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    v.setUint16(ip + 10, ~sum & 0xffff);
    p += 20;
    v.setUint16(p, d.srcPort);
    v.setUint16(p + 2, d.dstPort);
    v.setUint16(p + 4, 8 + d.payload.byteLength);
    p += 8;
    out.set(d.payload, p);
    p += d.payload.byteLength;
  }
  return out;
}
