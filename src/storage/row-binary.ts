import type { FlowSink } from '../decoder/decoder.js';
import type { FlowRow } from '../decoder/flow-row.js';
import { MAX_ROW_BYTES } from './flow-columns.js';

const TWO_32 = 4294967296;
const TWO_64 = TWO_32 * TWO_32;
const SATURATED = 0xffffffff;

/**
 * Encodes FlowRows as ClickHouse RowBinary (little-endian integers, IPv6 as 16 network-order bytes,
 * DateTime64(3) as Int64 milliseconds) into one preallocated chunk. When the chunk is full, `onFull`
 * must take() it (the collector writes it to the spool); without a callback the chunk grows.
 */
export class RowBinaryEncoder implements FlowSink {
  rows = 0;
  /** The earliest time_received (whole seconds) in the current chunk; Infinity while it is empty. */
  private minReceivedS = Number.POSITIVE_INFINITY;
  private buf: Uint8Array;
  private view: DataView;
  private pos = 0;
  private capacity: number;

  constructor(
    capacityBytes = 16 * 1024 * 1024,
    private readonly onFull: (() => void) | null = null,
  ) {
    this.capacity = Math.max(capacityBytes, MAX_ROW_BYTES * 2);
    this.buf = new Uint8Array(this.capacity);
    this.view = new DataView(this.buf.buffer);
  }

  get byteLength(): number {
    return this.pos;
  }

  /**
   * Returns the encoded rows and starts a new chunk in the same memory: the bytes are valid until the
   * next push (the spool writes them synchronously).
   */
  take(): { bytes: Uint8Array; rows: number; minReceivedMs: number } {
    const out = {
      bytes: this.buf.subarray(0, this.pos),
      rows: this.rows,
      minReceivedMs: this.minReceivedS * 1000,
    };
    this.pos = 0;
    this.rows = 0;
    this.minReceivedS = Number.POSITIVE_INFINITY;
    return out;
  }

  /**
   * One row. Written out in one function on purpose: a double (times, large counters, IPv4 addresses
   * above 2^30) passed to a helper that V8 does not inline is boxed into a new heap number, and that
   * per-record allocation is exactly what test/regression/allocation.test.ts guards against.
   */
  push(row: FlowRow): void {
    if (this.capacity - this.pos < MAX_ROW_BYTES) this.makeRoom();
    const v = this.view;
    const b = this.buf;
    let p = this.pos;
    let x = Math.floor(row.timeReceivedMs / 1000);
    if (x < this.minReceivedS) this.minReceivedS = x;
    v.setUint32(p, x, true);
    // DateTime64(3): Int64 milliseconds; the normaliser keeps them in [0, MAX_TIME_MS].
    x = row.flowStartMs;
    v.setUint32(p + 4, x >>> 0, true);
    v.setUint32(p + 8, (x / TWO_32) >>> 0, true);
    x = row.flowEndMs;
    v.setUint32(p + 12, x >>> 0, true);
    v.setUint32(p + 16, (x / TWO_32) >>> 0, true);
    p += 20;
    const exporter = row.exporterAddress;
    for (let i = 0; i < 16; i++) b[p + i] = exporter[i]!;
    p += 16;
    b[p] = row.version;
    v.setUint32(p + 1, row.observationDomainId, true);
    v.setUint32(p + 5, row.inIf, true);
    v.setUint32(p + 9, row.outIf, true);
    p += 13;
    if (row.srcFamily === 6) {
      copy16(b, p, row.srcBuf, row.srcOff);
    } else {
      // ::ffff:a.b.c.d, or :: when the record has no address.
      v.setUint32(p, 0);
      v.setUint32(p + 4, 0);
      if (row.srcFamily === 4) {
        v.setUint32(p + 8, 0xffff);
        v.setUint32(p + 12, row.srcV4);
      } else {
        v.setUint32(p + 8, 0);
        v.setUint32(p + 12, 0);
      }
    }
    p += 16;
    if (row.dstFamily === 6) {
      copy16(b, p, row.dstBuf, row.dstOff);
    } else {
      // ::ffff:a.b.c.d, or :: when the record has no address.
      v.setUint32(p, 0);
      v.setUint32(p + 4, 0);
      if (row.dstFamily === 4) {
        v.setUint32(p + 8, 0xffff);
        v.setUint32(p + 12, row.dstV4);
      } else {
        v.setUint32(p + 8, 0);
        v.setUint32(p + 12, 0);
      }
    }
    p += 16;
    v.setUint16(p, row.srcPort, true);
    v.setUint16(p + 2, row.dstPort, true);
    b[p + 4] = row.proto;
    v.setUint16(p + 5, row.tcpFlags, true);
    b[p + 7] = row.tos;
    p += 8;
    // UInt64 counters: two 32-bit halves; past 2^64 (a counter times a sampling rate) they saturate.
    x = row.bytes;
    if (x < TWO_64) {
      v.setUint32(p, x >>> 0, true);
      v.setUint32(p + 4, (x / TWO_32) >>> 0, true);
    } else {
      v.setUint32(p, SATURATED, true);
      v.setUint32(p + 4, SATURATED, true);
    }
    x = row.packets;
    if (x < TWO_64) {
      v.setUint32(p + 8, x >>> 0, true);
      v.setUint32(p + 12, (x / TWO_32) >>> 0, true);
    } else {
      v.setUint32(p + 8, SATURATED, true);
      v.setUint32(p + 12, SATURATED, true);
    }
    p += 16;
    v.setUint32(p, row.samplingRate, true);
    v.setUint32(p + 4, row.srcAs, true);
    v.setUint32(p + 8, row.dstAs, true);
    b[p + 12] = row.srcMask;
    b[p + 13] = row.dstMask;
    p += 14;
    if (row.nextHopFamily === 6) {
      copy16(b, p, row.nextHopBuf, row.nextHopOff);
    } else {
      // ::ffff:a.b.c.d, or :: when the record has no address.
      v.setUint32(p, 0);
      v.setUint32(p + 4, 0);
      if (row.nextHopFamily === 4) {
        v.setUint32(p + 8, 0xffff);
        v.setUint32(p + 12, row.nextHopV4);
      } else {
        v.setUint32(p + 8, 0);
        v.setUint32(p + 12, 0);
      }
    }
    p += 16;
    b[p] = row.direction;
    b[p + 1] = row.icmpType;
    b[p + 2] = row.icmpCode;
    v.setUint16(p + 3, row.srcVlan, true);
    v.setUint16(p + 5, row.dstVlan, true);
    b[p + 7] = row.endReason;
    b[p + 8] = row.firewallEvent;
    p += 9;
    x = row.reverseBytes;
    if (x < TWO_64) {
      v.setUint32(p, x >>> 0, true);
      v.setUint32(p + 4, (x / TWO_32) >>> 0, true);
    } else {
      v.setUint32(p, SATURATED, true);
      v.setUint32(p + 4, SATURATED, true);
    }
    x = row.reversePackets;
    if (x < TWO_64) {
      v.setUint32(p + 8, x >>> 0, true);
      v.setUint32(p + 12, (x / TWO_32) >>> 0, true);
    } else {
      v.setUint32(p + 8, SATURATED, true);
      v.setUint32(p + 12, SATURATED, true);
    }
    this.pos = p + 16;
    this.rows++;
  }

  private makeRoom(): void {
    this.onFull?.();
    if (this.capacity - this.pos >= MAX_ROW_BYTES) return;
    const grown = new Uint8Array(this.capacity * 2);
    grown.set(this.buf.subarray(0, this.pos));
    this.buf = grown;
    this.view = new DataView(grown.buffer);
    this.capacity = grown.byteLength;
  }
}

function copy16(dst: Uint8Array, p: number, src: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++) dst[p + i] = src[off + i]!;
}
