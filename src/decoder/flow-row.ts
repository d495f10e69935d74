import { readPacketSection, SECTION_NOT_IP, SECTION_OK, SectionHeaders } from './packet-section.js';
import type { RecordFields } from './record-fields.js';
import type { NormalisationPlan } from './template.js';

const EMPTY = new Uint8Array(16);

/** Latest flow time accepted (2106-02-07, the end of the flows table's DateTime range). */
export const MAX_TIME_MS = 4_294_967_295_000;

/** Flow direction column values (Enum8 in the flows table). */
export const DIRECTION_UNKNOWN = 0;
export const DIRECTION_INGRESS = 1;
export const DIRECTION_EGRESS = 2;

/**
 * One normalised flow, in the units of the flows table: absolute UTC milliseconds, bytes and packets
 * already multiplied by the sampling rate (the rate kept beside them), addresses as family + IPv4 number
 * or (buffer, offset) of 16 IPv6 bytes. Reused for every record; sinks copy what they keep.
 */
export class FlowRow {
  timeReceivedMs = 0;
  flowStartMs = 0;
  flowEndMs = 0;
  exporterAddress: Uint8Array = EMPTY;
  version = 0;
  observationDomainId = 0;
  templateId = 0;
  inIf = 0;
  outIf = 0;
  srcFamily = 0;
  srcV4 = 0;
  srcBuf: Uint8Array = EMPTY;
  srcOff = 0;
  dstFamily = 0;
  dstV4 = 0;
  dstBuf: Uint8Array = EMPTY;
  dstOff = 0;
  nextHopFamily = 0;
  nextHopV4 = 0;
  nextHopBuf: Uint8Array = EMPTY;
  nextHopOff = 0;
  srcPort = 0;
  dstPort = 0;
  proto = 0;
  tcpFlags = 0;
  tos = 0;
  bytes = 0;
  packets = 0;
  samplingRate = 1;
  srcAs = 0;
  dstAs = 0;
  srcMask = 0;
  dstMask = 0;
  direction = DIRECTION_UNKNOWN;
  icmpType = 0;
  icmpCode = 0;
  srcVlan = 0;
  dstVlan = 0;
  endReason = 0;
  firewallEvent = 0;
  reverseBytes = 0;
  reversePackets = 0;
}

/** What a record needs from its packet and stream to be normalised. Reused per packet. */
export class PacketContext {
  buf: Uint8Array = EMPTY;
  receivedMs = 0;
  /** Export time from the header, epoch ms (v9 and IPFIX have second precision). */
  exportMs = 0;
  /** v5/v9 header sysUpTime in ms; -1 for IPFIX, whose relative times use systemInitTimeMilliseconds. */
  sysUptimeMs = -1;
  /** IPFIX: epoch ms of the exporter's system init (IE 160 from options data); 0 when unknown. */
  sysInitMs = 0;
  /** Rate for records that do not say otherwise (v5 header, options data, configuration); ≥ 1. */
  samplingRate = 1;
  samplers: ReadonlyMap<number, number> = new Map();
  /** Set when forced by configuration: every record uses samplingRate. */
  samplingForced = false;
  exporterAddress: Uint8Array = EMPTY;
  version = 0;
  observationDomainId = 0;
  templateId = 0;
  samplingUnknown = 0;
  timeBaseUnknown = 0;
  timeOutOfRange = 0;
  /** Records whose packet section gave no IP header: cut short or malformed, or not IP at all. */
  sectionUnreadable = 0;
  sectionNotIp = 0;
}

/**
 * Turns the fields of one record into a FlowRow following the template's plan. Precedence rules:
 * - volume: octetDeltaCount (or postOctetDeltaCount when the delta is 0, e.g. egress-only exporters),
 *   else ASA NSEL initiatorOctets, else postOctetDeltaCount, else octetTotalCount; reverse from RFC 5103
 *   reverse elements or NSEL responderOctets;
 * - addresses: the IPv4 field unless it is 0.0.0.0 while the template also has IPv6;
 * - times: sysUpTime-relative, absolute (s, ms, NTP), delta-before-export, then observation time; a
 *   missing end is start + duration, a missing start is end − duration, neither is the export time;
 * - sampling: configuration override, then the record's own interval or sampler/selector id looked up
 *   in the stream's sampler table, then the packet default;
 * - packet sections (packet-section.ts): the headers of a sampled packet fill the columns the template
 *   has no elements for, bytes from dataLinkFrameSize, else ipTotalLength, else the IP header's length,
 *   packets 1, both times the rate.
 * Returns false when the record is not a flow and must not be stored: a packet section that gives no
 * IP header in a template with no addresses of its own (counted in ctx).
 */
export function normaliseRecord(
  f: RecordFields,
  plan: NormalisationPlan,
  ctx: PacketContext,
  row: FlowRow,
): boolean {
  // Times.
  let start = plan.start === 0 ? -1 : timeValue(plan.start, true, f, ctx);
  let end = plan.end === 0 ? -1 : timeValue(plan.end, false, f, ctx);
  if (start < 0 || end < 0) {
    const duration =
      plan.duration === 1
        ? f.flowDurationMilliseconds
        : plan.duration === 2
          ? Math.floor(f.flowDurationMicroseconds / 1000)
          : 0;
    if (start < 0 && end < 0) {
      start = ctx.exportMs;
      end = ctx.exportMs;
    } else if (start < 0) {
      start = end - duration;
    } else {
      end = start + duration;
    }
  }
  // Garbage (a misread template, a broken clock) must not reach the table as an impossible time.
  if (!(start >= 0 && start <= MAX_TIME_MS)) {
    start = ctx.exportMs;
    ctx.timeOutOfRange++;
  }
  if (!(end >= 0 && end <= MAX_TIME_MS)) {
    end = ctx.exportMs;
    ctx.timeOutOfRange++;
  }
  row.flowStartMs = start;
  row.flowEndMs = end;

  // Addresses.
  switch (plan.src) {
    case 4:
      row.srcFamily = 4;
      row.srcV4 = f.sourceIPv4Address;
      break;
    case 6:
      row.srcFamily = 6;
      row.srcBuf = ctx.buf;
      row.srcOff = f.sourceIPv6Address;
      break;
    case 10:
      if (f.sourceIPv4Address !== 0) {
        row.srcFamily = 4;
        row.srcV4 = f.sourceIPv4Address;
      } else {
        row.srcFamily = 6;
        row.srcBuf = ctx.buf;
        row.srcOff = f.sourceIPv6Address;
      }
      break;
    default:
      row.srcFamily = 0;
  }
  switch (plan.dst) {
    case 4:
      row.dstFamily = 4;
      row.dstV4 = f.destinationIPv4Address;
      break;
    case 6:
      row.dstFamily = 6;
      row.dstBuf = ctx.buf;
      row.dstOff = f.destinationIPv6Address;
      break;
    case 10:
      if (f.destinationIPv4Address !== 0) {
        row.dstFamily = 4;
        row.dstV4 = f.destinationIPv4Address;
      } else {
        row.dstFamily = 6;
        row.dstBuf = ctx.buf;
        row.dstOff = f.destinationIPv6Address;
      }
      break;
    default:
      row.dstFamily = 0;
  }
  if (plan.nextHop === 0) {
    row.nextHopFamily = 0;
  } else {
    const bgp = plan.nextHop > 10;
    const fam = bgp ? plan.nextHop - 10 : plan.nextHop;
    const v4 = bgp ? f.bgpNextHopIPv4Address : f.ipNextHopIPv4Address;
    if (fam === 4 || (fam === 10 && v4 !== 0)) {
      row.nextHopFamily = 4;
      row.nextHopV4 = v4;
    } else {
      row.nextHopFamily = 6;
      row.nextHopBuf = ctx.buf;
      row.nextHopOff = bgp ? f.bgpNextHopIPv6Address : f.ipNextHopIPv6Address;
    }
  }

  // Transport.
  const proto = f.protocolIdentifier;
  row.proto = proto;
  row.srcPort =
    plan.srcPort === 1
      ? f.sourceTransportPort
      : portValue(plan.srcPort, proto, 0, f.udpSourcePort, f.tcpSourcePort);
  row.dstPort =
    plan.dstPort === 1
      ? f.destinationTransportPort
      : portValue(plan.dstPort, proto, 0, f.udpDestinationPort, f.tcpDestinationPort);
  row.tcpFlags = f.tcpControlBits;
  row.tos = f.ipClassOfService;
  if (proto === 1 || proto === 58) {
    icmpValues(plan, f, proto, row);
  } else {
    row.icmpType = 0;
    row.icmpCode = 0;
  }

  // Routing.
  // Elements the template lacks read as 0 (RecordFields.reset), so only precedence needs the plan.
  const has = plan.has;
  const v6 = row.srcFamily === 6;
  row.srcMask =
    (v6 && has.sourceIPv6PrefixLength) || !has.sourceIPv4PrefixLength
      ? f.sourceIPv6PrefixLength
      : f.sourceIPv4PrefixLength;
  row.dstMask =
    (v6 && has.destinationIPv6PrefixLength) || !has.destinationIPv4PrefixLength
      ? f.destinationIPv6PrefixLength
      : f.destinationIPv4PrefixLength;
  row.srcAs = f.bgpSourceAsNumber;
  row.dstAs = f.bgpDestinationAsNumber;
  // ingress/egressPhysicalInterface (IE 252/253) when the template has no logical interface (IE 10/14)
  // or it is 0 (unknown): some exporters send only the physical ones.
  row.inIf = f.ingressInterface || f.ingressPhysicalInterface;
  row.outIf = f.egressInterface || f.egressPhysicalInterface;
  row.direction = has.flowDirection
    ? f.flowDirection === 0
      ? DIRECTION_INGRESS
      : f.flowDirection === 1
        ? DIRECTION_EGRESS
        : DIRECTION_UNKNOWN
    : DIRECTION_UNKNOWN;
  row.srcVlan = f.vlanId || f.dot1qVlanId;
  row.dstVlan = f.postVlanId || f.postDot1qVlanId;
  row.endReason = f.flowEndReason;
  row.firewallEvent = f.firewallEvent;

  // Volume and sampling.
  let rate = ctx.samplingRate;
  if (plan.sampling !== 0 && !ctx.samplingForced) rate = recordRate(plan.sampling, f, ctx);
  row.samplingRate = rate;
  row.bytes =
    (plan.bytes === 1
      ? f.octetDeltaCount
      : volume(plan.bytes, f.octetDeltaCount, f.initiatorOctets, f.postOctetDeltaCount, f.octetTotalCount)) *
    rate;
  row.packets =
    (plan.packets === 1
      ? f.packetDeltaCount
      : volume(
          plan.packets,
          f.packetDeltaCount,
          f.initiatorPackets,
          f.postPacketDeltaCount,
          f.packetTotalCount,
        )) * rate;
  row.reverseBytes =
    (plan.reverseBytes === 1 ? f.reverseOctetDeltaCount : plan.reverseBytes === 2 ? f.responderOctets : 0) *
    rate;
  row.reversePackets =
    (plan.reversePackets === 1
      ? f.reversePacketDeltaCount
      : plan.reversePackets === 2
        ? f.responderPackets
        : 0) * rate;
  return plan.section === 0 || applySection(f, plan, ctx, row, rate);
}

const section = new SectionHeaders();

/** Fills the columns the template lacks from its packet section; false when the record is not a flow. */
function applySection(
  f: RecordFields,
  plan: NormalisationPlan,
  ctx: PacketContext,
  row: FlowRow,
  rate: number,
): boolean {
  const h = section;
  const status = readPacketSection(plan.section, f, ctx.buf, h);
  if (status !== SECTION_OK) {
    if (status === SECTION_NOT_IP) ctx.sectionNotIp++;
    else ctx.sectionUnreadable++;
    // A template with addresses of its own is a flow record that also carries a section: keep it.
    return plan.src !== 0 || plan.dst !== 0;
  }
  const has = plan.has;
  if (plan.src === 0) {
    row.srcFamily = h.family;
    row.srcV4 = h.srcV4;
    row.srcBuf = ctx.buf;
    row.srcOff = h.srcOff;
  }
  if (plan.dst === 0) {
    row.dstFamily = h.family;
    row.dstV4 = h.dstV4;
    row.dstBuf = ctx.buf;
    row.dstOff = h.dstOff;
  }
  const sectionProto = !has.protocolIdentifier;
  if (sectionProto) row.proto = h.proto;
  if (plan.srcPort === 0) row.srcPort = h.srcPort;
  if (plan.dstPort === 0) row.dstPort = h.dstPort;
  if (!has.tcpControlBits) row.tcpFlags = h.tcpFlags;
  if (!has.ipClassOfService) row.tos = h.tos;
  if (sectionProto && !plan.icmp) {
    row.icmpType = h.icmpType;
    row.icmpCode = h.icmpCode;
  }
  if (!has.vlanId && !has.dot1qVlanId) row.srcVlan = h.vlan;
  // dataLinkFrameSize counts the frame as sampled (link-layer header included), as the exporter
  // reports it; without it, the IP length.
  if (plan.bytes === 0) row.bytes = (f.dataLinkFrameSize || f.ipTotalLength || h.ipLength) * rate;
  if (plan.packets === 0) row.packets = rate;
  return true;
}

/** The row columns that are the same for every record of a data set. */
export function setRowConstants(ctx: PacketContext, row: FlowRow): void {
  row.timeReceivedMs = ctx.receivedMs;
  row.exporterAddress = ctx.exporterAddress;
  row.version = ctx.version;
  row.observationDomainId = ctx.observationDomainId;
  row.templateId = ctx.templateId;
}

function timeValue(source: number, start: boolean, f: RecordFields, ctx: PacketContext): number {
  switch (source) {
    case 1: {
      const uptime = start ? f.flowStartSysUpTime : f.flowEndSysUpTime;
      if (ctx.sysUptimeMs >= 0) {
        // Signed 32-bit difference: correct across the ~49.7-day uptime wrap, and a record stamped a
        // few ms after the header lands a few ms after the export time instead of 49 days before it.
        return ctx.exportMs - ((ctx.sysUptimeMs - uptime) | 0);
      }
      // IPFIX has no sysUpTime in its header; IE 21/22 count from systemInitTimeMilliseconds (IANA
      // registry): the record's own IE 160 (Huawei NetStream sends it in every data record), else
      // the one from options data.
      const init = f.systemInitTimeMilliseconds > 0 ? f.systemInitTimeMilliseconds : ctx.sysInitMs;
      if (init > 0) return init + uptime;
      ctx.timeBaseUnknown++;
      return ctx.exportMs;
    }
    case 2:
      return (start ? f.flowStartSeconds : f.flowEndSeconds) * 1000;
    case 3:
      return start ? f.flowStartMilliseconds : f.flowEndMilliseconds;
    case 4:
      return start ? f.flowStartMicroseconds : f.flowEndMicroseconds;
    case 8:
      return start ? f.flowStartNanoseconds : f.flowEndNanoseconds;
    case 5:
      return (
        ctx.exportMs - Math.floor((start ? f.flowStartDeltaMicroseconds : f.flowEndDeltaMicroseconds) / 1000)
      );
    case 6:
      return f.observationTimeMilliseconds;
    case 7:
      return f.observationTimeSeconds * 1000;
    case 9:
      return f.observationTimeMicroseconds;
    case 10:
      return f.observationTimeNanoseconds;
    default:
      return -1;
  }
}

function portValue(source: number, proto: number, transport: number, udp: number, tcp: number): number {
  switch (source) {
    case 1:
      return transport;
    case 2:
      return udp;
    case 3:
      return tcp;
    case 4:
      return proto === 6 ? tcp : proto === 17 ? udp : tcp || udp;
    default:
      return 0;
  }
}

function icmpValues(plan: NormalisationPlan, f: RecordFields, proto: number, row: FlowRow): void {
  const has = plan.has;
  let typeCode = -1;
  if (proto === 58 && has.icmpTypeCodeIPv6) typeCode = f.icmpTypeCodeIPv6;
  else if (proto === 58 && (has.icmpTypeIPv6 || has.icmpCodeIPv6))
    typeCode = f.icmpTypeIPv6 * 256 + f.icmpCodeIPv6;
  else if (has.icmpTypeCodeIPv4) typeCode = f.icmpTypeCodeIPv4;
  else if (has.icmpTypeIPv4 || has.icmpCodeIPv4)
    typeCode = (has.icmpTypeIPv4 ? f.icmpTypeIPv4 : 0) * 256 + (has.icmpCodeIPv4 ? f.icmpCodeIPv4 : 0);
  else if (has.icmpTypeCodeIPv6) typeCode = f.icmpTypeCodeIPv6;
  // Cisco v5 and softflowd carry ICMP type and code in the destination port (type * 256 + code).
  if (typeCode < 0) typeCode = row.dstPort;
  row.icmpType = (typeCode >>> 8) & 255;
  row.icmpCode = typeCode & 255;
}

function recordRate(source: number, f: RecordFields, ctx: PacketContext): number {
  let rate = 0;
  switch (source) {
    case 1:
      rate = f.samplingInterval;
      break;
    case 2:
      rate = f.samplerRandomInterval;
      break;
    case 3:
    case 4: {
      const known = ctx.samplers.get(source === 3 ? f.samplerId : f.selectorId);
      if (known === undefined) {
        ctx.samplingUnknown++;
        return ctx.samplingRate;
      }
      rate = known;
      break;
    }
  }
  return rate >= 1 ? Math.round(rate) : ctx.samplingRate;
}

function volume(source: number, delta: number, initiator: number, post: number, total: number): number {
  switch (source) {
    case 1:
      return delta;
    case 2:
      return initiator;
    case 3:
      return post;
    case 4:
      return total;
    case 5:
      return delta !== 0 ? delta : post;
    default:
      return 0;
  }
}
