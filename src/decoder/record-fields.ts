/**
 * The information elements flowsentry extracts from a data record, one property each, named as
 * registered by IANA (reverse elements per RFC 5103 with the `reverse` prefix).
 *
 * One instance is reused for every record: a compiled template decoder assigns only the properties
 * its template carries. The decoder calls reset() whenever the template changes between data sets, so
 * an element the template lacks reads as 0, never as a value left by another template. All
 * properties are numbers so the object keeps one shape. IPv6 elements hold the byte offset of the
 * address inside the packet, not the address.
 */
export class RecordFields {
  // Volume.
  octetDeltaCount = 0;
  packetDeltaCount = 0;
  octetTotalCount = 0;
  packetTotalCount = 0;
  postOctetDeltaCount = 0;
  postPacketDeltaCount = 0;
  initiatorOctets = 0;
  responderOctets = 0;
  initiatorPackets = 0;
  responderPackets = 0;
  reverseOctetDeltaCount = 0;
  reversePacketDeltaCount = 0;
  // Addresses (IPv4 as uint32, IPv6 as offset in the packet).
  sourceIPv4Address = 0;
  destinationIPv4Address = 0;
  ipNextHopIPv4Address = 0;
  bgpNextHopIPv4Address = 0;
  sourceIPv6Address = 0;
  destinationIPv6Address = 0;
  ipNextHopIPv6Address = 0;
  bgpNextHopIPv6Address = 0;
  sourceIPv4PrefixLength = 0;
  destinationIPv4PrefixLength = 0;
  sourceIPv6PrefixLength = 0;
  destinationIPv6PrefixLength = 0;
  // Transport.
  protocolIdentifier = 0;
  sourceTransportPort = 0;
  destinationTransportPort = 0;
  udpSourcePort = 0;
  udpDestinationPort = 0;
  tcpSourcePort = 0;
  tcpDestinationPort = 0;
  tcpControlBits = 0;
  ipClassOfService = 0;
  icmpTypeCodeIPv4 = 0;
  icmpTypeCodeIPv6 = 0;
  icmpTypeIPv4 = 0;
  icmpCodeIPv4 = 0;
  icmpTypeIPv6 = 0;
  icmpCodeIPv6 = 0;
  // Routing and interfaces.
  bgpSourceAsNumber = 0;
  bgpDestinationAsNumber = 0;
  ingressInterface = 0;
  egressInterface = 0;
  ingressPhysicalInterface = 0;
  egressPhysicalInterface = 0;
  flowDirection = 0;
  biflowDirection = 0;
  vlanId = 0;
  postVlanId = 0;
  dot1qVlanId = 0;
  postDot1qVlanId = 0;
  flowEndReason = 0;
  firewallEvent = 0;
  // Time.
  flowStartSysUpTime = 0;
  flowEndSysUpTime = 0;
  flowStartSeconds = 0;
  flowEndSeconds = 0;
  flowStartMilliseconds = 0;
  flowEndMilliseconds = 0;
  flowStartMicroseconds = 0;
  flowEndMicroseconds = 0;
  flowStartNanoseconds = 0;
  flowEndNanoseconds = 0;
  flowStartDeltaMicroseconds = 0;
  flowEndDeltaMicroseconds = 0;
  systemInitTimeMilliseconds = 0;
  flowDurationMilliseconds = 0;
  flowDurationMicroseconds = 0;
  observationTimeSeconds = 0;
  observationTimeMilliseconds = 0;
  observationTimeMicroseconds = 0;
  observationTimeNanoseconds = 0;
  // Sampling (also read from options records).
  samplingInterval = 0;
  samplingAlgorithm = 0;
  samplerId = 0;
  samplerMode = 0;
  samplerRandomInterval = 0;
  selectorId = 0;
  samplingPacketInterval = 0;
  samplingPacketSpace = 0;
  samplingSize = 0;
  samplingPopulation = 0;
  samplingProbability = 0;
  // Packet sections (RFC 5477, RFC 7133): each section is the offset of its first byte in the packet
  // and its length; the headers in it are read by packet-section.ts.
  dataLinkFrameSize = 0;
  dataLinkFrameType = 0;
  sectionOffset = 0;
  ipTotalLength = 0;
  dataLinkFrameSection = 0;
  dataLinkFrameSectionLength = 0;
  ipHeaderPacketSection = 0;
  ipHeaderPacketSectionLength = 0;
  ipPayloadPacketSection = 0;
  ipPayloadPacketSectionLength = 0;
  mplsLabelStackSection = 0;
  mplsLabelStackSectionLength = 0;
  mplsPayloadPacketSection = 0;
  mplsPayloadPacketSectionLength = 0;

  /** Sets every element back to 0. */
  reset(): void {
    const self = this as unknown as Record<string, number>;
    for (const name of FIELD_NAMES) self[name] = 0;
  }
}

const FIELD_NAMES: readonly string[] = Object.keys(new RecordFields());

/** Names of the element properties (everything but methods). */
export type FieldName = {
  [K in keyof RecordFields]: RecordFields[K] extends number ? K : never;
}[keyof RecordFields];

/**
 * How a field is read: an unsigned integer of the template's length (1 to 8 bytes, reduced-size
 * encoding per RFC 7011 §6.2), an IPv4 address (4 bytes), an IPv6 address (16 bytes, kept as an offset),
 * an IEEE float64, a 4+4-byte NTP timestamp converted to epoch milliseconds, or an octet array of any
 * length, fixed or variable (kept as its offset in the packet, with its length in `lengthName`).
 */
export type FieldKind = 'unsigned' | 'ipv4' | 'ipv6' | 'float64' | 'ntp' | 'octets';

export interface FieldDef {
  readonly id: number;
  readonly enterprise: number;
  readonly name: FieldName;
  readonly kind: FieldKind;
  /** Octet arrays: the property that receives the length. */
  readonly lengthName?: FieldName;
}
