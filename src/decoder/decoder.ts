import {
  addressBytesToString,
  type CidrMatcher,
  ipv4ToString,
  isMappedIPv4,
  parseAddress,
} from '../common/ip.js';
import { compileRecordDecoder } from './compile.js';
import { FlowRow, normaliseRecord, PacketContext, setRowConstants } from './flow-row.js';
import { interpretRecordDecoder, readUnsigned } from './interpret.js';
import { RecordFields } from './record-fields.js';
import { Exporter, type ExportVersion, type PendingSet, Stream, streamKey } from './stream.js';
import {
  buildLayout,
  type Layout,
  layoutKey,
  type RecordDecoder,
  type Template,
  type TemplateField,
  type TemplateKind,
  VARIABLE_LENGTH,
} from './template.js';

/** Receives every decoded flow record. `row` and `fields` are reused: copy what you keep. */
export interface FlowSink {
  push(row: FlowRow, fields: RecordFields, template: Template): void;
}

export interface SamplingOverride {
  readonly matcher: CidrMatcher;
  readonly rate: number;
  /** Use this rate even when the exporter reports its own. */
  readonly force: boolean;
}

export interface DecoderOptions {
  /** Generate a decoder per template layout (true) or use the interpreter (false). */
  readonly compile: boolean;
  /** Templates unused (neither refreshed nor used by data) for this long are dropped. */
  readonly templateTimeoutMs: number;
  /** Data sets that arrive before their template are kept this long. */
  readonly pendingTimeoutMs: number;
  readonly pendingMaxBytes: number;
  readonly pendingStreamMaxBytes: number;
  readonly maxExporters: number;
  readonly maxStreams: number;
  readonly maxTemplatesPerStream: number;
  readonly maxTemplates: number;
  /** Most data records decoded from one v9 or IPFIX datagram; the rest is counted and dropped. */
  readonly maxRecordsPerPacket: number;
  /** Distinct template layouts kept for reuse (each with its compiled decoder). */
  readonly layoutCacheSize: number;
  readonly allowedExporters: CidrMatcher | null;
  readonly defaultSamplingRate: number;
  readonly samplingOverrides: readonly SamplingOverride[];
}

export const DEFAULT_DECODER_OPTIONS: DecoderOptions = {
  compile: true,
  templateTimeoutMs: 3_600_000,
  pendingTimeoutMs: 30_000,
  pendingMaxBytes: 8 * 1024 * 1024,
  pendingStreamMaxBytes: 1024 * 1024,
  maxExporters: 10_000,
  maxStreams: 20_000,
  maxTemplatesPerStream: 1024,
  maxTemplates: 100_000,
  maxRecordsPerPacket: 4096,
  layoutCacheSize: 1024,
  allowedExporters: null,
  defaultSamplingRate: 1,
  samplingOverrides: [],
};

/** Malformed input, each counted and dropped (the packet, or the rest of a set). */
export const DECODE_ERRORS = [
  'packet_too_short',
  'unknown_version',
  'v5_bad_count',
  'ipfix_bad_length',
  'set_too_short',
  'set_overrun',
  'set_id_reserved',
  'template_malformed',
  'template_id_reserved',
  'template_no_fields',
  'template_too_many_fields',
  'template_empty_record',
  'options_template_malformed',
  'record_overrun',
  'packet_record_limit',
  'packet_exception',
] as const;
export type DecodeError = (typeof DECODE_ERRORS)[number];

/** Everything else the decoder counts. */
export const DECODE_EVENTS = [
  'packets',
  'records',
  'option_records',
  'exporter_not_allowed',
  'exporter_limit',
  'stream_limit',
  'template_limit',
  'trailing_bytes',
  'sets_missing_template',
  'pending_decoded',
  'pending_expired',
  'pending_overflow',
  'templates_added',
  'templates_refreshed',
  'templates_replaced',
  'templates_withdrawn',
  'templates_expired',
  'templates_evicted',
  'templates_compiled',
  'compile_fallback',
  'sampling_rate_unknown',
  'sampling_unresolved',
  'time_base_unknown',
  'time_out_of_range',
  'packet_section_unreadable',
  'packet_section_not_ip',
] as const;
export type DecodeEvent = (typeof DECODE_EVENTS)[number];

export type DecoderCounters = Record<DecodeError | DecodeEvent, number>;

export interface StreamSnapshot {
  address: string;
  version: number;
  domain: number;
  packets: number;
  records: number;
  option_records: number;
  decode_errors: number;
  missing_templates: number;
  sequence_lost: number;
  sequence_lost_records: number;
  sequence_gaps: number;
  sequence_reordered: number;
  sequence_resets: number;
  templates: number;
  sampling_rate_unknown: number;
  /** Options records naming a selector algorithm whose rate cannot be derived (RFC 5477 elements). */
  sampling_unresolved: number;
  /** Data sets that arrived before their template: decoded when it came, or dropped when it did not. */
  pending_decoded_sets: number;
  pending_dropped_sets: number;
  /** Records with relative times and no system init time to anchor them (export time used). */
  time_base_unknown: number;
  /**
   * Records whose packet section (IE 313-317) gave no IP header: cut short, malformed or not at its
   * header; or a readable frame that is not IP. Not stored unless the template has its own addresses.
   */
  packet_section_unreadable: number;
  packet_section_not_ip: number;
  first_seen: string;
  last_seen: string;
}

export interface TemplateSnapshot {
  address: string;
  version: number;
  domain: number;
  id: number;
  kind: TemplateKind;
  scope_fields: number;
  fields: Array<{ id: number; enterprise: number; length: number }>;
  unknown_fields: number;
  last_used: string;
}

/** Each layout once; templates refer to it by index: [template id, layout index, last used ms]. */
export interface PersistedState {
  format: 2;
  savedAtMs: number;
  layouts: Array<{ kind: TemplateKind; scopeCount: number; fields: Array<[number, number, number]> }>;
  streams: Array<{
    address: string;
    version: number;
    domain: number;
    sysInitMs: number;
    defaultSamplingRate: number;
    samplers: Array<[number, number]>;
    templates: Array<[number, number, number]>;
  }>;
}

/** NetFlow v5's fixed 48-byte record, expressed as a template so it shares the compiled path. */
const V5_FIELDS: TemplateField[] = [
  [8, 4],
  [12, 4],
  [15, 4],
  [10, 2],
  [14, 2],
  [2, 4],
  [1, 4],
  [22, 4],
  [21, 4],
  [7, 2],
  [11, 2],
  [210, 1],
  [6, 1],
  [4, 1],
  [5, 1],
  [16, 2],
  [17, 2],
  [9, 1],
  [13, 1],
  [210, 2],
].map(([id, length]) => ({ id: id!, enterprise: 0, length: length! }));

const MAX_SAMPLERS_PER_STREAM = 1024;

/**
 * Decodes NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) datagrams into FlowRows.
 * Never throws on packet content: every problem is counted (globally and per stream) and the
 * packet, or the rest of the offending set, is dropped.
 */
export class Decoder {
  readonly counters: DecoderCounters;
  private readonly options: DecoderOptions;
  private readonly exporters = new Map<string, Exporter>();
  /** IPv4 exporters by address number, so the receive path looks them up without building strings. */
  private readonly exportersV4 = new Map<number, Exporter>();
  private streamCount = 0;
  private templateCount = 0;
  private pendingBytes = 0;
  private readonly streamsWithPending = new Set<Stream>();
  private readonly fields = new RecordFields();
  private readonly row = new FlowRow();
  private readonly ctx = new PacketContext();
  private readonly pendingCtx = new PacketContext();
  /** Layouts by key, least recently added first (bounded by layoutCacheSize). */
  private readonly layouts = new Map<string, Layout>();
  private compileSerial = 0;
  private readonly v5Template: Template;
  /** Stands in for every source outside the allowlist (see exporter()). */
  private readonly denied = new Exporter('::', new Uint8Array(16), false, 0, false);
  /** Set once the packet under way reached maxRecordsPerPacket. */
  private recordLimitHit = false;
  private dataRecordsInPacket = 0;
  private optionRecordsInPacket = 0;
  private countUnknown = false;
  /** The layout whose elements `fields` holds; other elements are 0 (reset on change). */
  private fieldsLayout: Layout | null = null;

  constructor(
    private readonly sink: FlowSink,
    options: Partial<DecoderOptions> = {},
  ) {
    this.options = { ...DEFAULT_DECODER_OPTIONS, ...options };
    this.counters = Object.fromEntries(
      [...DECODE_ERRORS, ...DECODE_EVENTS].map((k) => [k, 0]),
    ) as DecoderCounters;
    const v5 = buildLayout('data', 0, V5_FIELDS);
    if (typeof v5 === 'string') throw new Error('v5 template');
    // Built in, never evicted: kept out of the layout cache.
    this.v5Template = { id: 0, layout: v5, lastUsedMs: 0 };
    this.prepare(v5, 0);
  }

  /**
   * The exporter for a source address (IPv4 or IPv6 literal), created on first use. A source outside
   * collector.allowedExporters gets one shared stand-in that is never stored, so spoofed sources
   * cannot fill the exporter table and push real exporters (and their templates) out of it.
   */
  exporter(address: string): Exporter {
    const known = this.exporters.get(address);
    if (known) return known;
    const bytes = parseAddress(address) ?? new Uint8Array(16);
    const canonical = addressBytesToString(bytes);
    const again = canonical === address ? undefined : this.exporters.get(canonical);
    if (again) return again;
    const allowed = this.options.allowedExporters === null || this.options.allowedExporters.matches(bytes);
    if (!allowed) return this.denied;
    if (this.exporters.size >= this.options.maxExporters) this.evictExporter();
    const override = this.options.samplingOverrides.find((o) => o.matcher.matches(bytes));
    const exporter = new Exporter(canonical, bytes, allowed, override?.rate ?? 0, override?.force ?? false);
    this.exporters.set(canonical, exporter);
    if (isMappedIPv4(bytes, 0))
      this.exportersV4.set(new DataView(bytes.buffer, bytes.byteOffset).getUint32(12), exporter);
    return exporter;
  }

  /** The exporter for 16 address bytes at `offset` (IPv4-mapped for IPv4), created on first use. */
  exporterFor(bytes: Uint8Array, offset: number): Exporter {
    if (isMappedIPv4(bytes, offset)) {
      const v4 =
        ((bytes[offset + 12]! << 24) |
          (bytes[offset + 13]! << 16) |
          (bytes[offset + 14]! << 8) |
          bytes[offset + 15]!) >>>
        0;
      const known = this.exportersV4.get(v4);
      if (known) return known;
      return this.exporter(ipv4ToString(v4));
    }
    return this.exporter(addressBytesToString(bytes, offset));
  }

  /** Decodes one datagram received from `exporter` at `receivedMs` (epoch ms). */
  decode(exporter: Exporter, packet: Uint8Array, receivedMs: number): void {
    this.counters.packets++;
    exporter.lastSeenMs = receivedMs;
    if (!exporter.allowed) {
      this.counters.exporter_not_allowed++;
      return;
    }
    if (packet.byteLength < 4) {
      this.fail(this.stream(exporter, 0, 0, receivedMs), 'packet_too_short');
      return;
    }
    const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
    const version = view.getUint16(0);
    let stream: Stream | null = null;
    try {
      switch (version) {
        case 5:
          stream = this.decodeV5(exporter, packet, view, receivedMs);
          break;
        case 9:
          stream = this.decodeV9(exporter, packet, view, receivedMs);
          break;
        case 10:
          stream = this.decodeIpfix(exporter, packet, view, receivedMs);
          break;
        default:
          this.fail(this.stream(exporter, 0, 0, receivedMs), 'unknown_version');
      }
    } catch (error) {
      // DataView bounds errors from lengths that point outside the datagram end up here.
      if (!(error instanceof RangeError)) throw error;
      this.fail(stream, 'packet_exception');
    }
  }

  /** Drops expired templates and pending data sets; call every few seconds. */
  expire(nowMs: number): void {
    const limit = nowMs - this.options.templateTimeoutMs;
    for (const exporter of this.exporters.values()) {
      for (const stream of exporter.streams.values()) {
        for (const [id, template] of stream.templates) {
          if (template.lastUsedMs < limit) {
            stream.templates.delete(id);
            this.templateCount--;
            this.counters.templates_expired++;
          }
        }
      }
    }
    const pendingLimit = nowMs - this.options.pendingTimeoutMs;
    for (const stream of this.streamsWithPending) {
      const keep = stream.pending.filter((p) => p.receivedMs >= pendingLimit);
      const dropped = stream.pending.length - keep.length;
      if (dropped > 0) {
        this.counters.pending_expired += dropped;
        stream.stats.pendingDroppedSets += dropped;
        this.setPending(stream, keep);
      }
    }
  }

  streams(): StreamSnapshot[] {
    const out: StreamSnapshot[] = [];
    for (const exporter of this.exporters.values()) {
      for (const s of exporter.streams.values()) {
        out.push({
          address: exporter.address,
          version: s.version,
          domain: s.domain,
          packets: s.stats.packets,
          records: s.stats.records,
          option_records: s.stats.optionRecords,
          decode_errors: s.stats.decodeErrors,
          missing_templates: s.stats.missingTemplateSets,
          sequence_lost: s.sequence.lost,
          sequence_lost_records: s.sequence.lostRecords,
          sequence_gaps: s.sequence.gaps,
          sequence_reordered: s.sequence.reordered,
          sequence_resets: s.sequence.resets,
          templates: s.templates.size,
          sampling_rate_unknown: s.stats.samplingRateUnknown,
          sampling_unresolved: s.stats.samplingUnresolved,
          pending_decoded_sets: s.stats.pendingDecodedSets,
          pending_dropped_sets: s.stats.pendingDroppedSets,
          time_base_unknown: s.stats.timeBaseUnknown,
          packet_section_unreadable: s.stats.packetSectionUnreadable,
          packet_section_not_ip: s.stats.packetSectionNotIp,
          first_seen: new Date(s.stats.firstSeenMs).toISOString(),
          last_seen: new Date(s.stats.lastSeenMs).toISOString(),
        });
      }
    }
    return out;
  }

  templates(): TemplateSnapshot[] {
    const out: TemplateSnapshot[] = [];
    for (const exporter of this.exporters.values()) {
      for (const s of exporter.streams.values()) {
        for (const t of s.templates.values()) {
          out.push({
            address: exporter.address,
            version: s.version,
            domain: s.domain,
            id: t.id,
            kind: t.layout.kind,
            scope_fields: t.layout.scopeCount,
            fields: t.layout.fields.map((f) => ({ id: f.id, enterprise: f.enterprise, length: f.length })),
            unknown_fields: t.layout.unknownFields,
            last_used: new Date(t.lastUsedMs).toISOString(),
          });
        }
      }
    }
    return out;
  }

  get size(): {
    exporters: number;
    streams: number;
    templates: number;
    layouts: number;
    pendingBytes: number;
    compiled: number;
  } {
    return {
      exporters: this.exporters.size,
      streams: this.streamCount,
      templates: this.templateCount,
      layouts: this.layouts.size,
      pendingBytes: this.pendingBytes,
      compiled: [...this.layouts.values()].filter((l) => l.decode !== null).length,
    };
  }

  /**
   * Templates, sampler tables and system init times, to survive a restart: exporters resend templates
   * only by timer or packet count (RFC 7011 §8, RFC 3954 §5), often minutes apart.
   */
  exportState(nowMs: number): PersistedState {
    const layouts: PersistedState['layouts'] = [];
    const index = new Map<Layout, number>();
    const streams: PersistedState['streams'] = [];
    for (const exporter of this.exporters.values()) {
      for (const s of exporter.streams.values()) {
        if (
          s.templates.size === 0 &&
          s.samplers.size === 0 &&
          s.sysInitMs === 0 &&
          s.defaultSamplingRate === 0
        )
          continue;
        const templates: Array<[number, number, number]> = [];
        for (const t of s.templates.values()) {
          let i = index.get(t.layout);
          if (i === undefined) {
            i = layouts.length;
            index.set(t.layout, i);
            layouts.push({
              kind: t.layout.kind,
              scopeCount: t.layout.scopeCount,
              fields: t.layout.fields.map((f) => [f.id, f.enterprise, f.length]),
            });
          }
          templates.push([t.id, i, t.lastUsedMs]);
        }
        streams.push({
          address: exporter.address,
          version: s.version,
          domain: s.domain,
          sysInitMs: s.sysInitMs,
          defaultSamplingRate: s.defaultSamplingRate,
          samplers: [...s.samplers],
          templates,
        });
      }
    }
    return { format: 2, savedAtMs: nowMs, layouts, streams };
  }

  /** Restores exportState() output; entries that are malformed or already expired are skipped. */
  importState(state: PersistedState, nowMs: number): number {
    let restored = 0;
    if (state?.format !== 2 || !Array.isArray(state.streams) || !Array.isArray(state.layouts)) return 0;
    for (const entry of state.streams) {
      if (![5, 9, 10].includes(entry.version) || !Number.isInteger(entry.domain)) continue;
      const stream = this.stream(
        this.exporter(entry.address),
        entry.version as ExportVersion,
        entry.domain,
        nowMs,
      );
      if (!stream) continue;
      if (entry.sysInitMs > 0) stream.sysInitMs = entry.sysInitMs;
      if (entry.defaultSamplingRate > 0) stream.defaultSamplingRate = entry.defaultSamplingRate;
      for (const [id, rate] of entry.samplers ?? []) {
        if (Number.isInteger(id) && rate >= 1) stream.samplers.set(id, rate);
      }
      for (const [id, layoutIndex, lastUsedMs] of entry.templates ?? []) {
        const layout = state.layouts[layoutIndex];
        if (!layout || nowMs - lastUsedMs > this.options.templateTimeoutMs) continue;
        const fields = (layout.fields ?? []).map(([fid, enterprise, length]) => ({
          id: fid,
          enterprise,
          length,
        }));
        const kind = layout.kind === 'options' ? 'options' : 'data';
        if (this.addTemplate(stream, id, kind, layout.scopeCount, fields, lastUsedMs)) restored++;
      }
    }
    return restored;
  }

  // ---------------------------------------------------------------------------------------------
  // NetFlow v5: 24-byte header, count records of 48 bytes (Cisco, "NetFlow Export Datagram Format",
  // NetFlow Services Solutions Guide).

  private decodeV5(
    exporter: Exporter,
    packet: Uint8Array,
    view: DataView,
    receivedMs: number,
  ): Stream | null {
    if (view.byteLength < 24) {
      this.fail(this.stream(exporter, 5, 0, receivedMs), 'packet_too_short');
      return null;
    }
    const stream = this.stream(exporter, 5, view.getUint8(20) * 256 + view.getUint8(21), receivedMs);
    if (!stream) return null;
    const count = view.getUint16(2);
    if (count > 30 || 24 + 48 * count > view.byteLength) {
      this.fail(stream, 'v5_bad_count');
      return stream;
    }
    if (view.byteLength > 24 + 48 * count) this.counters.trailing_bytes++;
    stream.stats.packets++;
    stream.stats.lastSeenMs = receivedMs;
    const sysUptime = view.getUint32(4);
    const ctx = this.ctx;
    this.setupContext(ctx, stream, packet, receivedMs);
    ctx.exportMs = view.getUint32(8) * 1000 + Math.floor(view.getUint32(12) / 1e6);
    ctx.sysUptimeMs = sysUptime;
    ctx.templateId = 0;
    // Top two bits: sampling mode; low 14 bits: interval (0 = not sampled).
    const interval = view.getUint16(22) & 0x3fff;
    if (interval > 1 && !stream.exporter.rateForced) ctx.samplingRate = interval;
    const template = this.v5Template;
    const layout = template.layout;
    const decode = layout.decode!;
    const fields = this.useFields(layout);
    const row = this.row;
    setRowConstants(ctx, row);
    for (let i = 0, p = 24; i < count; i++, p += 48) {
      decode(view, p, fields);
      normaliseRecord(fields, layout.plan, ctx, row);
      this.sink.push(row, fields, template);
    }
    this.counters.records += count;
    stream.stats.records += count;
    this.finishContext(ctx, stream);
    stream.sequence.observe(view.getUint32(16), count, sysUptime);
    return stream;
  }

  // ---------------------------------------------------------------------------------------------
  // NetFlow v9: 20-byte header, then flowsets to the end of the datagram. The header count is not
  // trusted: RFC 3954 §5.1 says it counts all records, but FortiGate, Streamcore, nProbe and Cisco WLC
  // count flowsets or less (the FortiGate capture in test/fixtures/vendor: count 3 in a packet of 14
  // templates).

  private decodeV9(
    exporter: Exporter,
    packet: Uint8Array,
    view: DataView,
    receivedMs: number,
  ): Stream | null {
    if (view.byteLength < 20) {
      this.fail(this.stream(exporter, 9, 0, receivedMs), 'packet_too_short');
      return null;
    }
    const stream = this.stream(exporter, 9, view.getUint32(16), receivedMs);
    if (!stream) return null;
    stream.stats.packets++;
    stream.stats.lastSeenMs = receivedMs;
    const sysUptime = view.getUint32(4);
    const ctx = this.ctx;
    this.setupContext(ctx, stream, packet, receivedMs);
    ctx.exportMs = view.getUint32(8) * 1000;
    ctx.sysUptimeMs = sysUptime;
    this.walkSets(stream, ctx, view, 20, view.byteLength, false);
    this.finishContext(ctx, stream);
    stream.sequence.observe(
      view.getUint32(12),
      this.dataRecordsInPacket,
      sysUptime,
      this.optionRecordsInPacket,
    );
    return stream;
  }

  // ---------------------------------------------------------------------------------------------
  // IPFIX: 16-byte header with the message length; sets to the end of the message. Bytes after it
  // (softflowd captures hold several messages back to back) are not part of this message.

  private decodeIpfix(
    exporter: Exporter,
    packet: Uint8Array,
    view: DataView,
    receivedMs: number,
  ): Stream | null {
    if (view.byteLength < 16) {
      this.fail(this.stream(exporter, 10, 0, receivedMs), 'packet_too_short');
      return null;
    }
    const stream = this.stream(exporter, 10, view.getUint32(12), receivedMs);
    if (!stream) return null;
    const length = view.getUint16(2);
    if (length < 16 || length > view.byteLength) {
      this.fail(stream, 'ipfix_bad_length');
      return stream;
    }
    if (length < view.byteLength) this.counters.trailing_bytes++;
    stream.stats.packets++;
    stream.stats.lastSeenMs = receivedMs;
    const ctx = this.ctx;
    this.setupContext(ctx, stream, packet, receivedMs);
    ctx.exportMs = view.getUint32(4) * 1000;
    ctx.sysUptimeMs = -1;
    this.walkSets(stream, ctx, view, 16, length, true);
    this.finishContext(ctx, stream);
    stream.sequence.observe(
      view.getUint32(8),
      this.countUnknown ? -1 : this.dataRecordsInPacket,
      -1,
      this.optionRecordsInPacket,
    );
    return stream;
  }

  private walkSets(
    stream: Stream,
    ctx: PacketContext,
    view: DataView,
    start: number,
    end: number,
    ipfix: boolean,
  ) {
    this.dataRecordsInPacket = 0;
    this.optionRecordsInPacket = 0;
    this.countUnknown = false;
    this.recordLimitHit = false;
    const templateSet = ipfix ? 2 : 0;
    const optionsSet = ipfix ? 3 : 1;
    let p = start;
    while (end - p >= 4) {
      const id = view.getUint16(p);
      const length = view.getUint16(p + 2);
      if (length < 4) {
        // A zero set header is padding (Palo Alto, Cisco ACI fill the datagram with zeros): stop here,
        // and count what follows when it is not zeros.
        if (id !== 0 || length !== 0) this.fail(stream, 'set_too_short');
        else if (!zeros(view, p + 4, end)) this.counters.trailing_bytes++;
        return;
      }
      let setEnd = p + length;
      const overrun = setEnd > end;
      if (overrun) {
        this.fail(stream, 'set_overrun');
        setEnd = end;
      }
      if (id === templateSet) {
        this.parseTemplateSet(stream, view, p + 4, setEnd, ipfix, ctx.receivedMs);
      } else if (id === optionsSet) {
        this.parseOptionsTemplateSet(stream, view, p + 4, setEnd, ipfix, ctx.receivedMs);
      } else if (id >= 256) {
        this.dataSet(stream, ctx, view, id, p + 4, setEnd);
      } else {
        this.fail(stream, 'set_id_reserved');
      }
      if (overrun) return;
      p = setEnd;
    }
  }

  private dataSet(
    stream: Stream,
    ctx: PacketContext,
    view: DataView,
    id: number,
    body: number,
    end: number,
  ): void {
    const template = stream.templates.get(id);
    if (!template) {
      this.holdPending(stream, ctx, id, body, end);
      return;
    }
    template.lastUsedMs = ctx.receivedMs;
    ctx.templateId = id;
    try {
      if (template.layout.kind === 'options') {
        const options = this.optionsRecords(stream, template, view, body, end);
        this.dataRecordsInPacket += options;
        this.optionRecordsInPacket += options;
        // Options data earlier in a message applies to the data sets after it (softflowd sends IE 160
        // before its first data set).
        this.applyStreamContext(ctx, stream);
      } else {
        this.dataRecordsInPacket += this.flowRecords(stream, template, ctx, view, body, end);
      }
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
      // A variable-length field pointed past the datagram; records before it were kept.
      this.fail(stream, 'record_overrun');
    }
  }

  private flowRecords(
    stream: Stream,
    template: Template,
    ctx: PacketContext,
    view: DataView,
    body: number,
    end: number,
  ): number {
    const layout = template.layout;
    const decode = layout.decode ?? this.prepare(layout, template.id);
    const fields = this.useFields(layout);
    const row = this.row;
    setRowConstants(ctx, row);
    const plan = layout.plan;
    const min = layout.minRecordLength;
    const sink = this.sink;
    let p = body;
    let n = 0;
    let stored = 0;
    let overran = false;
    const room = this.options.maxRecordsPerPacket - this.dataRecordsInPacket;
    try {
      while (end - p >= min) {
        if (n >= room) {
          // Far more records than any exporter puts in a datagram (a 1-byte template in 64 KiB):
          // the rest of the packet is dropped, counted once.
          if (!this.recordLimitHit) this.fail(stream, 'packet_record_limit');
          this.recordLimitHit = true;
          overran = true;
          break;
        }
        const next = decode(view, p, fields);
        if (next > end) {
          this.fail(stream, 'record_overrun');
          overran = true;
          break;
        }
        p = next;
        n++;
        // A record whose packet section holds no IP header is counted (finishContext), not stored.
        if (normaliseRecord(fields, plan, ctx, row)) {
          sink.push(row, fields, template);
          stored++;
        }
      }
      // Padding is shorter than a record (RFC 7011 §3.3.1, RFC 3954 §5.3) but never fills a set with
      // no record in it: a set shorter than one record of its template.
      if (n === 0 && !overran && end - p >= 4) this.fail(stream, 'record_overrun');
    } finally {
      this.counters.records += stored;
      stream.stats.records += stored;
    }
    // Every data record counts toward the sequence number, stored or not.
    return n;
  }

  /**
   * Options data: sampler tables (IE 48/302 with 34/50/305-311), the system init time (IE 160) and
   * default rates. Low volume, so interpreted field by field. v9 scope fields carry scope types, not
   * information elements, and are skipped.
   */
  private optionsRecords(
    stream: Stream,
    template: Template,
    view: DataView,
    body: number,
    end: number,
  ): number {
    const values = new Map<number, number>();
    const v9 = stream.version === 9;
    let p = body;
    let n = 0;
    const layout = template.layout;
    while (end - p >= layout.minRecordLength) {
      values.clear();
      let q = p;
      layout.fields.forEach((field, index) => {
        let length = field.length;
        if (length === VARIABLE_LENGTH) {
          length = view.getUint8(q);
          q += 1;
          if (length === 255) {
            length = view.getUint16(q);
            q += 2;
          }
        } else if (
          !(v9 && index < layout.scopeCount) &&
          length >= 1 &&
          length <= 8 &&
          field.enterprise === 0 &&
          // The first occurrence of a repeated element wins, as in data records (template.ts).
          !values.has(field.id)
        ) {
          values.set(
            field.id,
            // samplingProbability is a float64, sent reduced to a float32 by some (RFC 7011 §6.2).
            field.id === 311 && length === 8
              ? view.getFloat64(q)
              : field.id === 311 && length === 4
                ? view.getFloat32(q)
                : readUnsigned(view, q, length),
          );
        }
        q += length;
      });
      if (q > end) {
        this.fail(stream, 'record_overrun');
        break;
      }
      this.applyOptions(stream, values);
      p = q;
      n++;
    }
    // Padding is shorter than a record (RFC 7011 §3.3.1) but never fills a set with no record in it.
    if (n === 0 && end - p >= 4) this.fail(stream, 'record_overrun');
    this.counters.option_records += n;
    stream.stats.optionRecords += n;
    return n;
  }

  private applyOptions(stream: Stream, values: Map<number, number>): void {
    const init = values.get(160);
    if (init !== undefined && init > 0) stream.sysInitMs = init;
    const rate = samplingRateOf(values);
    if (rate < 0) {
      // A selector whose algorithm or parameters give no rate: its records are counted as
      // sampling_rate_unknown when they name it; this counts the announcement itself.
      this.counters.sampling_unresolved++;
      stream.stats.samplingUnresolved++;
      return;
    }
    if (rate === 0) return;
    const id = values.get(48) ?? values.get(302);
    if (id === undefined) {
      stream.defaultSamplingRate = rate;
    } else if (stream.samplers.has(id) || stream.samplers.size < MAX_SAMPLERS_PER_STREAM) {
      stream.samplers.set(id, rate);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Templates.

  private parseTemplateSet(
    stream: Stream,
    view: DataView,
    body: number,
    end: number,
    ipfix: boolean,
    now: number,
  ) {
    let p = body;
    while (end - p >= 4) {
      const id = view.getUint16(p);
      const count = view.getUint16(p + 2);
      p += 4;
      if (count === 0) {
        // IPFIX withdrawal (RFC 7011 §8.1); in v9 zeros to the end of the set are padding, and a
        // template with no fields anything else.
        if (!ipfix) {
          if (id !== 0 || !zeros(view, p, end)) this.fail(stream, 'template_malformed');
          return;
        }
        this.withdraw(stream, id, 'data');
        continue;
      }
      const fields = this.readFields(view, p, end, count, ipfix);
      if (fields === null) {
        this.fail(stream, 'template_malformed');
        return;
      }
      p = fields.end;
      if (id < 256) {
        this.fail(stream, 'template_id_reserved');
        continue;
      }
      this.addTemplate(stream, id, 'data', 0, fields.fields, now);
    }
  }

  private parseOptionsTemplateSet(
    stream: Stream,
    view: DataView,
    body: number,
    end: number,
    ipfix: boolean,
    now: number,
  ) {
    let p = body;
    while (end - p >= (ipfix ? 4 : 6)) {
      const id = view.getUint16(p);
      let count: number;
      let scopeCount: number;
      let fields: { fields: TemplateField[]; end: number } | null;
      if (ipfix) {
        count = view.getUint16(p + 2);
        if (count === 0) {
          this.withdraw(stream, id, 'options');
          p += 4;
          continue;
        }
        if (end - p < 6) {
          // A template header with fields (not a withdrawal) cut short: not padding.
          this.fail(stream, 'options_template_malformed');
          return;
        }
        scopeCount = view.getUint16(p + 4);
        p += 6;
        if (scopeCount === 0 || scopeCount > count) {
          this.fail(stream, 'options_template_malformed');
          return;
        }
        fields = this.readFields(view, p, end, count, true);
      } else {
        // v9 gives scope and option lengths in bytes (RFC 3954 §6.1).
        const scopeBytes = view.getUint16(p + 2);
        const optionBytes = view.getUint16(p + 4);
        if (id === 0 && scopeBytes === 0 && optionBytes === 0) {
          // Zeros to the end of the set are padding; a record of zeros followed by more is not.
          if (!zeros(view, p + 6, end)) this.fail(stream, 'options_template_malformed');
          return;
        }
        p += 6;
        if (scopeBytes % 4 !== 0 || optionBytes % 4 !== 0) {
          this.fail(stream, 'options_template_malformed');
          return;
        }
        scopeCount = scopeBytes / 4;
        count = scopeCount + optionBytes / 4;
        fields = this.readFields(view, p, end, count, false);
      }
      if (fields === null) {
        this.fail(stream, 'options_template_malformed');
        return;
      }
      p = fields.end;
      if (id < 256) {
        this.fail(stream, 'template_id_reserved');
        continue;
      }
      this.addTemplate(stream, id, 'options', scopeCount, fields.fields, now);
    }
  }

  private readFields(
    view: DataView,
    p: number,
    end: number,
    count: number,
    ipfix: boolean,
  ): { fields: TemplateField[]; end: number } | null {
    // Each field takes at least 4 bytes: reject impossible counts before allocating anything.
    if (count * 4 > end - p) return null;
    const fields: TemplateField[] = [];
    for (let i = 0; i < count; i++) {
      if (end - p < 4) return null;
      const raw = view.getUint16(p);
      const length = view.getUint16(p + 2);
      p += 4;
      let enterprise = 0;
      let id = raw;
      if (ipfix && raw & 0x8000) {
        if (end - p < 4) return null;
        enterprise = view.getUint32(p);
        id = raw & 0x7fff;
        p += 4;
      }
      fields.push({ id, enterprise, length });
    }
    return { fields, end: p };
  }

  private addTemplate(
    stream: Stream,
    id: number,
    kind: TemplateKind,
    scopeCount: number,
    fields: TemplateField[],
    now: number,
  ): boolean {
    const existing = stream.templates.get(id);
    const key = layoutKey(kind, scopeCount, fields);
    if (existing && existing.layout.key === key) {
      // A refresh (exporters resend templates every few packets): no new layout, no new template.
      existing.lastUsedMs = Math.max(existing.lastUsedMs, now);
      this.counters.templates_refreshed++;
      return true;
    }
    const layout = this.layout(key, kind, scopeCount, fields);
    if (typeof layout === 'string') {
      this.fail(stream, layout);
      return false;
    }
    if (existing) {
      this.counters.templates_replaced++;
    } else {
      if (stream.templates.size >= this.options.maxTemplatesPerStream) {
        this.evictTemplate(stream);
      } else if (this.templateCount >= this.options.maxTemplates) {
        this.counters.template_limit++;
        return false;
      }
      this.templateCount++;
      this.counters.templates_added++;
    }
    stream.templates.set(id, { id, layout, lastUsedMs: now });
    if (stream.pending.length > 0) this.decodePending(stream, id);
    return true;
  }

  /** The shared layout for a key, built on first sight. */
  private layout(key: string, kind: TemplateKind, scopeCount: number, fields: TemplateField[]) {
    const known = this.layouts.get(key);
    if (known) return known;
    const built = buildLayout(kind, scopeCount, fields);
    if (typeof built === 'string') return built;
    this.admit(built);
    return built;
  }

  /**
   * Puts a layout in the cache, evicting the oldest beyond layoutCacheSize. An evicted layout loses
   * its compiled decoder (templates still using it keep the rest) and comes back through prepare()
   * when data needs it again, so at most layoutCacheSize compiled decoders exist at any time.
   */
  private admit(layout: Layout): void {
    const previous = this.layouts.get(layout.key);
    if (previous === layout) return;
    if (previous) {
      previous.decode = null;
      this.layouts.delete(layout.key);
    }
    this.layouts.set(layout.key, layout);
    while (this.layouts.size > this.options.layoutCacheSize) {
      const [oldestKey, oldest] = this.layouts.entries().next().value as [string, Layout];
      oldest.decode = null;
      this.layouts.delete(oldestKey);
    }
  }

  private withdraw(stream: Stream, id: number, kind: TemplateKind): void {
    // ID 2 in a template set (3 in an options template set) withdraws all templates of that kind.
    const all = (kind === 'data' && id === 2) || (kind === 'options' && id === 3);
    if (!all && id < 256) {
      this.fail(stream, 'template_id_reserved');
      return;
    }
    for (const [tid, t] of stream.templates) {
      if (t.layout.kind === kind && (all || tid === id)) {
        stream.templates.delete(tid);
        this.templateCount--;
        this.counters.templates_withdrawn++;
      }
    }
  }

  private evictTemplate(stream: Stream): void {
    let oldest: Template | null = null;
    for (const t of stream.templates.values()) if (!oldest || t.lastUsedMs < oldest.lastUsedMs) oldest = t;
    if (oldest) {
      stream.templates.delete(oldest.id);
      this.templateCount--;
      this.counters.templates_evicted++;
    }
  }

  /** Compiles (or interprets) a layout's record decoder on its first data record. */
  private prepare(layout: Layout, templateId: number): RecordDecoder {
    if (layout.decode) return layout.decode;
    if (layout !== this.v5Template.layout) this.admit(layout);
    let decode: RecordDecoder | null = null;
    if (this.options.compile) {
      try {
        // Named after the first template that used it, so it is recognisable in profiles.
        decode = compileRecordDecoder(layout.fields, `template_${templateId}_${++this.compileSerial}$decode`);
        this.counters.templates_compiled++;
      } catch {
        // Code generation refused (--disallow-code-generation-from-strings): use the interpreter.
        this.counters.compile_fallback++;
      }
    }
    layout.decode = decode ?? interpretRecordDecoder(layout.fields);
    return layout.decode;
  }

  // ---------------------------------------------------------------------------------------------
  // Data before its template: kept per stream, bounded in bytes and time, decoded on arrival.

  private holdPending(stream: Stream, ctx: PacketContext, id: number, body: number, end: number): void {
    this.counters.sets_missing_template++;
    stream.stats.missingTemplateSets++;
    this.countUnknown = true;
    const size = end - body;
    if (
      size > this.options.pendingStreamMaxBytes - stream.pendingBytes ||
      size > this.options.pendingMaxBytes - this.pendingBytes
    ) {
      this.counters.pending_overflow++;
      stream.stats.pendingDroppedSets++;
      return;
    }
    const held: PendingSet = {
      templateId: id,
      bytes: ctx.buf.slice(body, end),
      receivedMs: ctx.receivedMs,
      exportMs: ctx.exportMs,
      sysUptimeMs: ctx.sysUptimeMs,
    };
    this.setPending(stream, [...stream.pending, held]);
  }

  private decodePending(stream: Stream, id: number): void {
    const template = stream.templates.get(id);
    if (!template) return;
    const matching = stream.pending.filter((p) => p.templateId === id);
    if (matching.length === 0) return;
    this.setPending(
      stream,
      stream.pending.filter((p) => p.templateId !== id),
    );
    const ctx = this.pendingCtx;
    for (const held of matching) {
      const view = new DataView(held.bytes.buffer, held.bytes.byteOffset, held.bytes.byteLength);
      this.setupContext(ctx, stream, held.bytes, held.receivedMs);
      ctx.exportMs = held.exportMs;
      ctx.sysUptimeMs = held.sysUptimeMs;
      ctx.templateId = id;
      // The records count toward the stream, not toward the current packet's sequence check.
      const saved = this.dataRecordsInPacket;
      const savedOptions = this.optionRecordsInPacket;
      this.dataSet(stream, ctx, view, id, 0, held.bytes.byteLength);
      this.dataRecordsInPacket = saved;
      this.optionRecordsInPacket = savedOptions;
      this.finishContext(ctx, stream);
      this.counters.pending_decoded++;
      stream.stats.pendingDecodedSets++;
    }
  }

  /** The scratch record, cleared when the layout changes so absent elements read as 0. */
  private useFields(layout: Layout): RecordFields {
    if (this.fieldsLayout !== layout) {
      this.fields.reset();
      this.fieldsLayout = layout;
    }
    return this.fields;
  }

  private setPending(stream: Stream, pending: PendingSet[]): void {
    let bytes = 0;
    for (const p of pending) bytes += p.bytes.byteLength;
    this.pendingBytes += bytes - stream.pendingBytes;
    stream.pending = pending;
    stream.pendingBytes = bytes;
    if (pending.length > 0) this.streamsWithPending.add(stream);
    else this.streamsWithPending.delete(stream);
  }

  // ---------------------------------------------------------------------------------------------

  private setupContext(ctx: PacketContext, stream: Stream, buf: Uint8Array, receivedMs: number) {
    ctx.buf = buf;
    ctx.receivedMs = receivedMs;
    ctx.exporterAddress = stream.exporter.addressBytes;
    ctx.version = stream.version;
    ctx.observationDomainId = stream.domain;
    ctx.samplingUnknown = 0;
    ctx.timeBaseUnknown = 0;
    ctx.timeOutOfRange = 0;
    ctx.sectionUnreadable = 0;
    ctx.sectionNotIp = 0;
    this.applyStreamContext(ctx, stream);
  }

  /** The parts of the context that options data can change. */
  private applyStreamContext(ctx: PacketContext, stream: Stream): void {
    const exporter = stream.exporter;
    ctx.sysInitMs = stream.sysInitMs;
    ctx.samplers = stream.samplers;
    ctx.samplingForced = exporter.rateForced;
    ctx.samplingRate = exporter.rateForced
      ? exporter.configuredRate
      : stream.defaultSamplingRate || exporter.configuredRate || this.options.defaultSamplingRate || 1;
  }

  private finishContext(ctx: PacketContext, stream: Stream): void {
    if (ctx.samplingUnknown > 0) {
      this.counters.sampling_rate_unknown += ctx.samplingUnknown;
      stream.stats.samplingRateUnknown += ctx.samplingUnknown;
    }
    if (ctx.timeBaseUnknown > 0) {
      this.counters.time_base_unknown += ctx.timeBaseUnknown;
      stream.stats.timeBaseUnknown += ctx.timeBaseUnknown;
    }
    this.counters.time_out_of_range += ctx.timeOutOfRange;
    if (ctx.sectionUnreadable > 0) {
      this.counters.packet_section_unreadable += ctx.sectionUnreadable;
      stream.stats.packetSectionUnreadable += ctx.sectionUnreadable;
    }
    if (ctx.sectionNotIp > 0) {
      this.counters.packet_section_not_ip += ctx.sectionNotIp;
      stream.stats.packetSectionNotIp += ctx.sectionNotIp;
    }
  }

  private stream(
    exporter: Exporter,
    version: ExportVersion | 0,
    domain: number,
    nowMs: number,
  ): Stream | null {
    const key = streamKey(version, domain);
    const known = exporter.streams.get(key);
    if (known) return known;
    if (this.streamCount >= this.options.maxStreams) {
      this.counters.stream_limit++;
      return null;
    }
    const stream = new Stream(exporter, version, domain, nowMs);
    exporter.streams.set(key, stream);
    this.streamCount++;
    return stream;
  }

  private evictExporter(): void {
    let oldest: Exporter | null = null;
    for (const e of this.exporters.values()) if (!oldest || e.lastSeenMs < oldest.lastSeenMs) oldest = e;
    if (!oldest) return;
    for (const s of oldest.streams.values()) {
      this.templateCount -= s.templates.size;
      this.streamCount--;
      this.setPending(s, []);
    }
    this.exporters.delete(oldest.address);
    if (isMappedIPv4(oldest.addressBytes, 0))
      this.exportersV4.delete(
        new DataView(oldest.addressBytes.buffer, oldest.addressBytes.byteOffset).getUint32(12),
      );
    this.counters.exporter_limit++;
  }

  private fail(stream: Stream | null, reason: DecodeError | 'template_limit'): void {
    this.counters[reason]++;
    if (stream) stream.stats.decodeErrors++;
  }
}

/** Whether the bytes from `from` to `end` are all zero. */
function zeros(view: DataView, from: number, end: number): boolean {
  for (let i = from; i < end; i++) if (view.getUint8(i) !== 0) return false;
  return true;
}

/**
 * Sampling rate from options values: ≥ 1, 0 when the values carry no sampling information, -1 when
 * they name a selector algorithm whose rate cannot be derived from them.
 *
 * With selectorAlgorithm (IE 304) the algorithm chooses the elements (RFC 5476, Selector Report
 * Interpretation; elements of RFC 5477; algorithm numbers from the IANA PSAMP registry) and nothing
 * else is read: Cisco sends samplingPacketInterval 1 beside samplingSize/samplingPopulation for random
 * sampling, which must not be taken as 1-in-1.
 * - 1 systematic count-based: (samplingPacketInterval + samplingPacketSpace) / samplingPacketInterval;
 * - 2 systematic time-based: (samplingTimeInterval + samplingTimeSpace) / samplingTimeInterval, the
 *   share of time selected, which is the share of packets when arrivals do not follow the schedule;
 * - 3 random n-out-of-N: samplingPopulation / samplingSize;
 * - 4 uniform probabilistic: 1 / samplingProbability;
 * - 5 property match filtering: 1, every matching packet is selected (RFC 5475);
 * - 6-8 hash-based filtering: the hash output range over the selected range, the expected share of
 *   packets whose hash falls in the selected range (how RFC 5475 has hash-based selection emulate
 *   random sampling);
 * - anything else (0 is reserved, 9 and up unassigned), or parameters missing or out of range: -1.
 * Without IE 304: packet interval/space, samplingInterval (34), samplerRandomInterval (50), n-of-N,
 * probability, in that order.
 */
export function samplingRateOf(values: ReadonlyMap<number, number>): number {
  const algorithm = values.get(304);
  if (algorithm !== undefined) return selectorRate(algorithm, values);
  const interval = values.get(305);
  const space = values.get(306);
  if (interval !== undefined && interval > 0) return Math.round((interval + (space ?? 0)) / interval);
  for (const id of [34, 50]) {
    const v = values.get(id);
    if (v !== undefined && v >= 1) return v;
  }
  const nOfN = ratio(values.get(310), values.get(309));
  if (nOfN > 0) return nOfN;
  const probability = values.get(311);
  if (probability !== undefined && probability > 0 && probability <= 1) return Math.round(1 / probability);
  return 0;
}

function selectorRate(algorithm: number, values: ReadonlyMap<number, number>): number {
  let rate = 0;
  switch (algorithm) {
    case 1:
    case 2: {
      const interval = values.get(algorithm === 1 ? 305 : 307);
      const space = values.get(algorithm === 1 ? 306 : 308);
      if (space !== undefined) rate = ratio((interval ?? 0) + space, interval);
      break;
    }
    case 3:
      rate = ratio(values.get(310), values.get(309));
      break;
    case 4: {
      const probability = values.get(311);
      if (probability !== undefined && probability > 0 && probability <= 1)
        rate = Math.round(1 / probability);
      break;
    }
    case 5:
      rate = 1;
      break;
    case 6:
    case 7:
    case 8: {
      const outMin = values.get(329);
      const outMax = values.get(330);
      const selMin = values.get(331);
      const selMax = values.get(332);
      if (outMin !== undefined && outMax !== undefined && selMin !== undefined && selMax !== undefined) {
        if (selMin >= outMin && selMax <= outMax && selMax >= selMin)
          rate = ratio(outMax - outMin + 1, selMax - selMin + 1);
      }
      break;
    }
  }
  return rate >= 1 ? rate : -1;
}

/** whole / part rounded, when both are known, part ≥ 1 and whole ≥ part; else 0. */
function ratio(whole: number | undefined, part: number | undefined): number {
  if (whole === undefined || part === undefined || !(part >= 1) || !(whole >= part)) return 0;
  return Math.round(whole / part);
}
