import { parseAddress } from '../common/ip.js';

/**
 * Builds NetFlow v5, v9 and IPFIX export packets: the synthetic exporter behind tests, the
 * benchmarks' loads. Values are given per field in template order.
 */
export interface ExportField {
  readonly id: number;
  readonly enterprise?: number;
  /** Byte length; 65535 for variable length (IPFIX §7 encoding). */
  readonly length: number;
}

/** A field value: an integer, an address literal, or raw bytes. */
export type FieldValue = number | bigint | string | Uint8Array;

export interface TemplateSpec {
  readonly id: number;
  readonly fields: readonly ExportField[];
  /** Options templates only: how many leading fields are scope fields. */
  readonly scopeCount?: number;
}

const VARIABLE = 65535;

/** Encodes one data record for `fields`. */
export function encodeRecord(fields: readonly ExportField[], values: readonly FieldValue[]): Uint8Array {
  const parts: number[] = [];
  fields.forEach((field, i) => {
    const value = values[i] ?? 0;
    if (field.length === VARIABLE) {
      const bytes = typeof value === 'string' ? new TextEncoder().encode(value) : toBytes(value, 0);
      if (bytes.length < 255) parts.push(bytes.length);
      else parts.push(255, bytes.length >> 8, bytes.length & 255);
      parts.push(...bytes);
    } else {
      parts.push(...toBytes(value, field.length));
    }
  });
  return Uint8Array.from(parts);
}

function toBytes(value: FieldValue, length: number): Uint8Array {
  if (value instanceof Uint8Array) {
    if (length === 0) return value;
    const out = new Uint8Array(length);
    out.set(value.subarray(0, length));
    return out;
  }
  if (typeof value === 'string') {
    const address = parseAddress(value);
    if (!address) throw new Error(`not an address: ${value}`);
    return length === 4 ? address.subarray(12) : address;
  }
  let v = BigInt(value);
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

function u16(v: number): number[] {
  return [(v >>> 8) & 255, v & 255];
}

function u32(v: number): number[] {
  return [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
}

/** Assembles sets into one v9 or IPFIX message. */
export class ExportPacketBuilder {
  private readonly sets: Uint8Array[] = [];
  private records = 0;

  constructor(
    readonly version: 9 | 10,
    readonly domain: number,
  ) {}

  /** A template set (v9 id 0, IPFIX id 2). */
  templates(templates: readonly TemplateSpec[]): this {
    const body: number[] = [];
    for (const t of templates) {
      body.push(...u16(t.id), ...u16(t.fields.length));
      for (const f of t.fields) body.push(...this.fieldSpec(f));
    }
    return this.set(this.version === 9 ? 0 : 2, body);
  }

  /** An options template set (v9 id 1 with byte lengths, IPFIX id 3 with field counts). */
  optionsTemplates(templates: readonly TemplateSpec[]): this {
    const body: number[] = [];
    for (const t of templates) {
      const scope = t.scopeCount ?? 1;
      if (this.version === 9) {
        body.push(...u16(t.id), ...u16(scope * 4), ...u16((t.fields.length - scope) * 4));
      } else {
        body.push(...u16(t.id), ...u16(t.fields.length), ...u16(scope));
      }
      for (const f of t.fields) body.push(...this.fieldSpec(f));
    }
    if (this.version === 9) while (body.length % 4 !== 0) body.push(0);
    return this.set(this.version === 9 ? 1 : 3, body);
  }

  /** IPFIX template withdrawal (field count 0) for each id. */
  withdraw(ids: readonly number[], options = false): this {
    const body: number[] = [];
    for (const id of ids) body.push(...u16(id), 0, 0);
    return this.set(options ? 3 : 2, body);
  }

  /** A data set of already encoded records, padded to 4 bytes. */
  data(
    templateId: number,
    records: readonly Uint8Array[],
    options: { pad?: boolean; count?: boolean } = {},
  ): this {
    const body: number[] = [];
    for (const r of records) body.push(...r);
    if (options.pad ?? true) while (body.length % 4 !== 0) body.push(0);
    if (options.count ?? true) this.records += records.length;
    return this.set(templateId, body);
  }

  /** Raw bytes appended as they are (malformed-input tests). */
  raw(bytes: readonly number[]): this {
    this.sets.push(Uint8Array.from(bytes));
    return this;
  }

  /** Data records added so far (for IPFIX sequence numbers). */
  get dataRecords(): number {
    return this.records;
  }

  build(header: { exportSecs: number; sequence: number; sysUptimeMs?: number; count?: number }): Uint8Array {
    const bodyLength = this.sets.reduce((s, b) => s + b.length, 0);
    const head =
      this.version === 9
        ? [
            ...u16(9),
            ...u16(header.count ?? this.records),
            ...u32(header.sysUptimeMs ?? 0),
            ...u32(header.exportSecs),
            ...u32(header.sequence),
            ...u32(this.domain),
          ]
        : [
            ...u16(10),
            ...u16(16 + bodyLength),
            ...u32(header.exportSecs),
            ...u32(header.sequence),
            ...u32(this.domain),
          ];
    const out = new Uint8Array(head.length + bodyLength);
    out.set(head);
    let p = head.length;
    for (const s of this.sets) {
      out.set(s, p);
      p += s.length;
    }
    return out;
  }

  private fieldSpec(f: ExportField): number[] {
    if (this.version === 10 && f.enterprise)
      return [...u16(f.id | 0x8000), ...u16(f.length), ...u32(f.enterprise)];
    return [...u16(f.id), ...u16(f.length)];
  }

  private set(id: number, body: number[]): this {
    const out = new Uint8Array(4 + body.length);
    out.set([...u16(id), ...u16(4 + body.length)]);
    out.set(body, 4);
    this.sets.push(out);
    return this;
  }
}

export interface V5Record {
  src: string;
  dst: string;
  nextHop?: string;
  input?: number;
  output?: number;
  packets: number;
  bytes: number;
  firstUptimeMs: number;
  lastUptimeMs: number;
  srcPort: number;
  dstPort: number;
  tcpFlags?: number;
  proto: number;
  tos?: number;
  srcAs?: number;
  dstAs?: number;
  srcMask?: number;
  dstMask?: number;
}

/** A NetFlow v5 packet (24-byte header, 48-byte records). */
export function buildV5Packet(
  header: {
    sysUptimeMs: number;
    unixSecs: number;
    unixNsecs?: number;
    sequence: number;
    engineType?: number;
    engineId?: number;
    sampling?: number;
  },
  records: readonly V5Record[],
): Uint8Array {
  const out = new Uint8Array(24 + 48 * records.length);
  const v = new DataView(out.buffer);
  v.setUint16(0, 5);
  v.setUint16(2, records.length);
  v.setUint32(4, header.sysUptimeMs);
  v.setUint32(8, header.unixSecs);
  v.setUint32(12, header.unixNsecs ?? 0);
  v.setUint32(16, header.sequence);
  out[20] = header.engineType ?? 0;
  out[21] = header.engineId ?? 0;
  v.setUint16(22, header.sampling ?? 0);
  records.forEach((r, i) => {
    const p = 24 + 48 * i;
    out.set(parseAddress(r.src)!.subarray(12), p);
    out.set(parseAddress(r.dst)!.subarray(12), p + 4);
    out.set(parseAddress(r.nextHop ?? '0.0.0.0')!.subarray(12), p + 8);
    v.setUint16(p + 12, r.input ?? 0);
    v.setUint16(p + 14, r.output ?? 0);
    v.setUint32(p + 16, r.packets);
    v.setUint32(p + 20, r.bytes);
    v.setUint32(p + 24, r.firstUptimeMs);
    v.setUint32(p + 28, r.lastUptimeMs);
    v.setUint16(p + 32, r.srcPort);
    v.setUint16(p + 34, r.dstPort);
    out[p + 37] = r.tcpFlags ?? 0;
    out[p + 38] = r.proto;
    out[p + 39] = r.tos ?? 0;
    v.setUint16(p + 40, r.srcAs ?? 0);
    v.setUint16(p + 42, r.dstAs ?? 0);
    out[p + 44] = r.srcMask ?? 0;
    out[p + 45] = r.dstMask ?? 0;
  });
  return out;
}
