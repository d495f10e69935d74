import { lengthFits, lookupField } from './information-elements.js';
import { type FieldName, RecordFields } from './record-fields.js';

/** Template field length that marks a variable-length field (RFC 7011 §7; H3C also uses it in v9). */
export const VARIABLE_LENGTH = 65535;

export interface TemplateField {
  readonly id: number;
  /** Private enterprise number; 0 for IANA elements and for every NetFlow v9 field. */
  readonly enterprise: number;
  readonly length: number;
}

/** Reads one record at `pos` into `fields`; returns the position after it. */
export type RecordDecoder = (view: DataView, pos: number, fields: RecordFields) => number;

export type TemplateKind = 'data' | 'options';

/**
 * Which source each normalised column comes from, decided once per template (see flow-row.ts).
 * Numbers rather than strings so the per-record switch statements stay cheap.
 */
export interface NormalisationPlan {
  readonly has: Readonly<Record<FieldName, boolean>>;
  /** 1 octetDeltaCount, 2 initiatorOctets, 3 postOctetDeltaCount, 4 octetTotalCount, 5 delta else post. */
  readonly bytes: number;
  readonly packets: number;
  /** 1 RFC 5103 reverse delta, 2 responderOctets/Packets. */
  readonly reverseBytes: number;
  readonly reversePackets: number;
  /** 0 none, 4 IPv4, 6 IPv6, 10 both (the non-zero IPv4 wins, else IPv6). */
  readonly src: number;
  readonly dst: number;
  /** 0 none, 4/6/10 ipNextHop, 14/16/20 bgpNextHop (+10). */
  readonly nextHop: number;
  /** 1 transport port, 2 UDP, 3 TCP, 4 UDP or TCP by protocol. */
  readonly srcPort: number;
  readonly dstPort: number;
  /**
   * 1 sysUpTime, 2 seconds, 3 milliseconds, 4 NTP µs element, 8 NTP ns element, 5 delta µs before
   * export, 6 observation ms, 7 observation s, 9 observation µs (NTP), 10 observation ns (NTP).
   */
  readonly start: number;
  readonly end: number;
  /** 1 ms, 2 µs. */
  readonly duration: number;
  /** 1 samplingInterval, 2 samplerRandomInterval, 3 samplerId table, 4 selectorId table. */
  readonly sampling: number;
  readonly icmp: boolean;
  /**
   * The packet section the flow is read from when the template carries one (packet-section.ts):
   * 0 none, 1 ipHeaderPacketSection (continued by ipPayloadPacketSection), 2 mplsPayloadPacketSection
   * (after mplsLabelStackSection), 3 dataLinkFrameSection, 4 only sections without an IP header
   * (a label stack or an IP payload alone), which cannot give a flow. The IP header section comes
   * first because it needs no link-layer parsing; all describe the same packet.
   */
  readonly section: number;
}

/**
 * A template's shape: kind, scope count and fields, with everything derived from them. Exporters of
 * one model send the same few layouts, so the decoder keeps one Layout per shape and every template
 * of that shape refers to it: per-template memory is then an ID, a reference and a timestamp.
 */
export interface Layout {
  /** kind, scope count and field signature: equal keys mean interchangeable layouts. */
  readonly key: string;
  readonly kind: TemplateKind;
  /** Options templates: the first scopeCount fields are scope fields. */
  readonly scopeCount: number;
  readonly fields: readonly TemplateField[];
  /** Smallest possible record (variable-length fields count one byte); always ≥ 1. */
  readonly minRecordLength: number;
  readonly plan: NormalisationPlan;
  /** Number of fields flowsentry does not decode (skipped by length). */
  readonly unknownFields: number;
  /** Compiled (or interpreted) on first use by data, so template floods compile nothing. */
  decode: RecordDecoder | null;
}

export interface Template {
  readonly id: number;
  readonly layout: Layout;
  lastUsedMs: number;
}

export const MAX_TEMPLATE_FIELDS = 512;

export type TemplateProblem = 'template_no_fields' | 'template_too_many_fields' | 'template_empty_record';

export function layoutKey(kind: TemplateKind, scopeCount: number, fields: readonly TemplateField[]): string {
  return `${kind === 'options' ? `o${scopeCount}` : 'd'}|${layoutSignature(fields)}`;
}

export function buildLayout(
  kind: TemplateKind,
  scopeCount: number,
  fields: readonly TemplateField[],
): Layout | TemplateProblem {
  if (fields.length === 0) return 'template_no_fields';
  if (fields.length > MAX_TEMPLATE_FIELDS) return 'template_too_many_fields';
  let min = 0;
  let unknown = 0;
  for (const f of fields) {
    if (f.length === VARIABLE_LENGTH) {
      min += 1;
    } else {
      min += f.length;
    }
    const def = lookupField(f.id, f.enterprise);
    if (!def || !lengthFits(def.kind, f.length)) unknown++;
  }
  if (min === 0) return 'template_empty_record';
  return {
    key: layoutKey(kind, scopeCount, fields),
    kind,
    scopeCount,
    fields,
    minRecordLength: min,
    plan: buildPlan(kind === 'options' ? fields.slice(scopeCount) : fields),
    unknownFields: unknown,
    decode: null,
  };
}

export function layoutSignature(fields: readonly TemplateField[]): string {
  let s = '';
  for (const f of fields) s += `${f.enterprise ? `${f.enterprise}/` : ''}${f.id}:${f.length},`;
  return s;
}

const FIELD_NAMES = Object.keys(new RecordFields()) as FieldName[];

export function buildPlan(fields: readonly TemplateField[]): NormalisationPlan {
  const has = {} as Record<FieldName, boolean>;
  for (const name of FIELD_NAMES) has[name] = false;
  for (const f of fields) {
    const def = lookupField(f.id, f.enterprise);
    if (def && lengthFits(def.kind, f.length)) {
      has[def.name] = true;
      if (def.lengthName) has[def.lengthName] = true;
    }
  }
  const pick = (...options: Array<[boolean, number]>): number => options.find(([ok]) => ok)?.[1] ?? 0;
  const family = (v4: boolean, v6: boolean) => (v4 && v6 ? 10 : v4 ? 4 : v6 ? 6 : 0);
  const port = (transport: boolean, udp: boolean, tcp: boolean) =>
    transport ? 1 : udp && tcp ? 4 : udp ? 2 : tcp ? 3 : 0;
  const nextHopDirect = family(has.ipNextHopIPv4Address, has.ipNextHopIPv6Address);
  const nextHopBgp = family(has.bgpNextHopIPv4Address, has.bgpNextHopIPv6Address);
  return {
    has,
    bytes: pick(
      [has.octetDeltaCount && has.postOctetDeltaCount, 5],
      [has.octetDeltaCount, 1],
      [has.initiatorOctets, 2],
      [has.postOctetDeltaCount, 3],
      [has.octetTotalCount, 4],
    ),
    packets: pick(
      [has.packetDeltaCount && has.postPacketDeltaCount, 5],
      [has.packetDeltaCount, 1],
      [has.initiatorPackets, 2],
      [has.postPacketDeltaCount, 3],
      [has.packetTotalCount, 4],
    ),
    reverseBytes: pick([has.reverseOctetDeltaCount, 1], [has.responderOctets, 2]),
    reversePackets: pick([has.reversePacketDeltaCount, 1], [has.responderPackets, 2]),
    src: family(has.sourceIPv4Address, has.sourceIPv6Address),
    dst: family(has.destinationIPv4Address, has.destinationIPv6Address),
    nextHop: nextHopDirect || (nextHopBgp ? nextHopBgp + 10 : 0),
    srcPort: port(has.sourceTransportPort, has.udpSourcePort, has.tcpSourcePort),
    dstPort: port(has.destinationTransportPort, has.udpDestinationPort, has.tcpDestinationPort),
    start: pick(
      [has.flowStartSysUpTime, 1],
      [has.flowStartMilliseconds, 3],
      [has.flowStartSeconds, 2],
      [has.flowStartMicroseconds, 4],
      [has.flowStartNanoseconds, 8],
      [has.flowStartDeltaMicroseconds, 5],
    ),
    end: pick(
      [has.flowEndSysUpTime, 1],
      [has.flowEndMilliseconds, 3],
      [has.flowEndSeconds, 2],
      [has.flowEndMicroseconds, 4],
      [has.flowEndNanoseconds, 8],
      [has.flowEndDeltaMicroseconds, 5],
      [has.observationTimeMilliseconds, 6],
      [has.observationTimeSeconds, 7],
      [has.observationTimeMicroseconds, 9],
      [has.observationTimeNanoseconds, 10],
    ),
    duration: pick([has.flowDurationMilliseconds, 1], [has.flowDurationMicroseconds, 2]),
    sampling: pick(
      [has.samplingInterval, 1],
      [has.samplerRandomInterval, 2],
      [has.samplerId, 3],
      [has.selectorId, 4],
    ),
    section: pick(
      [has.ipHeaderPacketSection, 1],
      [has.mplsPayloadPacketSection, 2],
      [has.dataLinkFrameSection, 3],
      [has.mplsLabelStackSection || has.ipPayloadPacketSection, 4],
    ),
    icmp:
      has.icmpTypeCodeIPv4 ||
      has.icmpTypeCodeIPv6 ||
      has.icmpTypeIPv4 ||
      has.icmpCodeIPv4 ||
      has.icmpTypeIPv6 ||
      has.icmpCodeIPv6,
  };
}

/**
 * For each field of a template, whether it is the first usable occurrence of its element. An element
 * repeated in one template (a tunnel exporter reporting the outer and the inner header with the same
 * elements, an MPLS stack, ...) is decoded from its first occurrence and later ones are skipped: RFC
 * 7011 §8 has repeated elements follow the order in which the Metering Process treats them, which for
 * an encapsulated packet is outside in, so the first occurrence describes the outer header, the one
 * the Observation Point forwarded (and the one the interfaces, next hop and AS numbers go with). The
 * decoder previously let the last occurrence overwrite it. Occurrences with a length this element
 * cannot have are not counted, so a malformed first copy does not hide a good second one.
 */
export function firstOccurrences(fields: readonly TemplateField[]): boolean[] {
  const seen = new Set<string>();
  return fields.map((field) => {
    const def = lookupField(field.id, field.enterprise);
    if (def === undefined || !lengthFits(def.kind, field.length) || seen.has(def.name)) return false;
    seen.add(def.name);
    return true;
  });
}
