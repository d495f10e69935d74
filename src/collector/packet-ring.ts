/**
 * A single-producer, single-consumer ring of datagrams in a SharedArrayBuffer, between the receive
 * thread (which only copies packets in) and a decoder thread. The socket never waits for decoding or
 * storage: when the ring is full the receiver drops the packet and counts it, visibly.
 *
 * Layout: an Int32 control block, then the data area (a power of two). Each entry is 8-byte aligned:
 *   u32 entry length (0 = wrap: continue at offset 0) | u32 payload length | f64 receive time (ms)
 *   | 16 bytes source address (IPv4-mapped) | u16 source port | u16 reserved | payload
 * head and tail are free-running 32-bit byte counters; used = head - tail (mod 2^32).
 */
const HEAD = 0;
const TAIL = 1;
const SLEEPING = 2;
const CONTROL_BYTES = 64;
export const ENTRY_HEADER = 40;

export type RingEntryHandler = (
  payload: Uint8Array,
  address: Uint8Array,
  addressOffset: number,
  port: number,
  receivedMs: number,
) => void;

export function createRingBuffer(bytes: number): SharedArrayBuffer {
  let size = 1 << 16;
  while (size < bytes) size *= 2;
  const ring = new SharedArrayBuffer(CONTROL_BYTES + size);
  // Touch every page now: the kernel maps a fresh allocation lazily, and otherwise the receive
  // thread takes a page fault (and a page of zeroing) every 4 KiB the first time a burst fills the
  // ring, on the one path that must keep up with the socket. In the end-to-end bench this halved
  // the trials that lost records near the limit. The memory is resident from the start instead of
  // after the first large burst.
  new Uint8Array(ring).fill(0);
  return ring;
}

class RingBase {
  protected readonly control: Int32Array;
  protected readonly data: Uint8Array;
  protected readonly view: DataView;
  protected readonly mask: number;
  readonly capacity: number;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.control = new Int32Array(buffer, 0, CONTROL_BYTES / 4);
    this.capacity = buffer.byteLength - CONTROL_BYTES;
    if ((this.capacity & (this.capacity - 1)) !== 0) throw new Error('ring size must be a power of two');
    this.data = new Uint8Array(buffer, CONTROL_BYTES, this.capacity);
    this.view = new DataView(buffer, CONTROL_BYTES, this.capacity);
    this.mask = this.capacity - 1;
  }

  /** Bytes waiting to be decoded. */
  get used(): number {
    return (Atomics.load(this.control, HEAD) - Atomics.load(this.control, TAIL)) >>> 0;
  }
}

export class RingWriter extends RingBase {
  private head: number;

  constructor(buffer: SharedArrayBuffer) {
    super(buffer);
    this.head = Atomics.load(this.control, HEAD);
  }

  /** Copies one datagram in; false when there is no room (the caller counts the drop). */
  write(payload: Uint8Array, address: Uint8Array, port: number, receivedMs: number): boolean {
    const need = (ENTRY_HEADER + payload.byteLength + 7) & ~7;
    const tail = Atomics.load(this.control, TAIL);
    let free = this.capacity - ((this.head - tail) >>> 0);
    let off = this.head & this.mask;
    const contiguous = this.capacity - off;
    if (need > contiguous) {
      // Entries never straddle the end: mark the rest as skipped and start again at 0.
      if (free < contiguous + need) return false;
      this.view.setUint32(off, 0, true);
      this.head = (this.head + contiguous) | 0;
      free -= contiguous;
      off = 0;
    } else if (free < need) {
      return false;
    }
    const v = this.view;
    v.setUint32(off, need, true);
    v.setUint32(off + 4, payload.byteLength, true);
    v.setFloat64(off + 8, receivedMs, true);
    this.data.set(address, off + 16);
    v.setUint16(off + 32, port, true);
    this.data.set(payload, off + ENTRY_HEADER);
    this.head = (this.head + need) | 0;
    Atomics.store(this.control, HEAD, this.head);
    if (Atomics.load(this.control, SLEEPING) !== 0) Atomics.notify(this.control, HEAD);
    return true;
  }

  /** Wakes the reader (used at shutdown so it sees that nothing more will come). */
  wake(): void {
    Atomics.notify(this.control, HEAD);
  }
}

export class RingReader extends RingBase {
  private tail: number;

  constructor(buffer: SharedArrayBuffer) {
    super(buffer);
    this.tail = Atomics.load(this.control, TAIL);
  }

  /**
   * Hands up to `max` entries to `handle` (payloads are views into the ring, valid only during the
   * call) and frees their space. Returns the number of entries read.
   */
  read(handle: RingEntryHandler, max: number): number {
    const head = Atomics.load(this.control, HEAD);
    let n = 0;
    const v = this.view;
    const data = this.data;
    while (this.tail !== head && n < max) {
      const off = this.tail & this.mask;
      const length = v.getUint32(off, true);
      if (length === 0) {
        this.tail = (this.tail + (this.capacity - off)) | 0;
        continue;
      }
      const size = v.getUint32(off + 4, true);
      handle(
        data.subarray(off + ENTRY_HEADER, off + ENTRY_HEADER + size),
        data,
        off + 16,
        v.getUint16(off + 32, true),
        v.getFloat64(off + 8, true),
      );
      this.tail = (this.tail + length) | 0;
      n++;
      // Free space as we go so a busy writer is not starved during a long drain.
      if ((n & 63) === 0) Atomics.store(this.control, TAIL, this.tail);
    }
    Atomics.store(this.control, TAIL, this.tail);
    return n;
  }

  /** Resolves when the writer adds an entry, or after `timeoutMs`. */
  async waitForData(timeoutMs: number): Promise<void> {
    const head = Atomics.load(this.control, HEAD);
    if (head !== this.tail) return;
    Atomics.store(this.control, SLEEPING, 1);
    try {
      const result = Atomics.waitAsync(this.control, HEAD, head, timeoutMs);
      if (result.async) await result.value;
    } finally {
      Atomics.store(this.control, SLEEPING, 0);
    }
  }
}
