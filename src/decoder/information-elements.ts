import type { FieldDef, FieldKind, FieldName } from './record-fields.js';

/**
 * Information elements flowsentry decodes, by IANA id (https://www.iana.org/assignments/ipfix). NetFlow v9
 * field types 1-127 share these numbers (RFC 3954 §8); v9 has no enterprise bit, so vendor types above
 * 32767 are looked up in V9_VENDOR_FIELDS instead. Everything else is skipped by length and counted.
 */
const IANA: ReadonlyArray<readonly [number, FieldName, FieldKind]> = [
  [1, 'octetDeltaCount', 'unsigned'],
  [2, 'packetDeltaCount', 'unsigned'],
  [4, 'protocolIdentifier', 'unsigned'],
  [5, 'ipClassOfService', 'unsigned'],
  [6, 'tcpControlBits', 'unsigned'],
  [7, 'sourceTransportPort', 'unsigned'],
  [8, 'sourceIPv4Address', 'ipv4'],
  [9, 'sourceIPv4PrefixLength', 'unsigned'],
  [10, 'ingressInterface', 'unsigned'],
  [11, 'destinationTransportPort', 'unsigned'],
  [12, 'destinationIPv4Address', 'ipv4'],
  [13, 'destinationIPv4PrefixLength', 'unsigned'],
  [14, 'egressInterface', 'unsigned'],
  [15, 'ipNextHopIPv4Address', 'ipv4'],
  [16, 'bgpSourceAsNumber', 'unsigned'],
  [17, 'bgpDestinationAsNumber', 'unsigned'],
  [18, 'bgpNextHopIPv4Address', 'ipv4'],
  [21, 'flowEndSysUpTime', 'unsigned'],
  [22, 'flowStartSysUpTime', 'unsigned'],
  [23, 'postOctetDeltaCount', 'unsigned'],
  [24, 'postPacketDeltaCount', 'unsigned'],
  [27, 'sourceIPv6Address', 'ipv6'],
  [28, 'destinationIPv6Address', 'ipv6'],
  [29, 'sourceIPv6PrefixLength', 'unsigned'],
  [30, 'destinationIPv6PrefixLength', 'unsigned'],
  [32, 'icmpTypeCodeIPv4', 'unsigned'],
  [34, 'samplingInterval', 'unsigned'],
  [35, 'samplingAlgorithm', 'unsigned'],
  [48, 'samplerId', 'unsigned'],
  [49, 'samplerMode', 'unsigned'],
  [50, 'samplerRandomInterval', 'unsigned'],
  [58, 'vlanId', 'unsigned'],
  [59, 'postVlanId', 'unsigned'],
  [61, 'flowDirection', 'unsigned'],
  [62, 'ipNextHopIPv6Address', 'ipv6'],
  [63, 'bgpNextHopIPv6Address', 'ipv6'],
  [85, 'octetTotalCount', 'unsigned'],
  [86, 'packetTotalCount', 'unsigned'],
  [136, 'flowEndReason', 'unsigned'],
  [139, 'icmpTypeCodeIPv6', 'unsigned'],
  [150, 'flowStartSeconds', 'unsigned'],
  [151, 'flowEndSeconds', 'unsigned'],
  [152, 'flowStartMilliseconds', 'unsigned'],
  [153, 'flowEndMilliseconds', 'unsigned'],
  [154, 'flowStartMicroseconds', 'ntp'],
  [155, 'flowEndMicroseconds', 'ntp'],
  [156, 'flowStartNanoseconds', 'ntp'],
  [157, 'flowEndNanoseconds', 'ntp'],
  [158, 'flowStartDeltaMicroseconds', 'unsigned'],
  [159, 'flowEndDeltaMicroseconds', 'unsigned'],
  [160, 'systemInitTimeMilliseconds', 'unsigned'],
  [161, 'flowDurationMilliseconds', 'unsigned'],
  [162, 'flowDurationMicroseconds', 'unsigned'],
  [176, 'icmpTypeIPv4', 'unsigned'],
  [177, 'icmpCodeIPv4', 'unsigned'],
  [178, 'icmpTypeIPv6', 'unsigned'],
  [179, 'icmpCodeIPv6', 'unsigned'],
  [180, 'udpSourcePort', 'unsigned'],
  [181, 'udpDestinationPort', 'unsigned'],
  [182, 'tcpSourcePort', 'unsigned'],
  [183, 'tcpDestinationPort', 'unsigned'],
  [231, 'initiatorOctets', 'unsigned'],
  [232, 'responderOctets', 'unsigned'],
  [224, 'ipTotalLength', 'unsigned'],
  [233, 'firewallEvent', 'unsigned'],
  [239, 'biflowDirection', 'unsigned'],
  [243, 'dot1qVlanId', 'unsigned'],
  [252, 'ingressPhysicalInterface', 'unsigned'],
  [253, 'egressPhysicalInterface', 'unsigned'],
  [254, 'postDot1qVlanId', 'unsigned'],
  [298, 'initiatorPackets', 'unsigned'],
  [299, 'responderPackets', 'unsigned'],
  [302, 'selectorId', 'unsigned'],
  [305, 'samplingPacketInterval', 'unsigned'],
  [306, 'samplingPacketSpace', 'unsigned'],
  [309, 'samplingSize', 'unsigned'],
  [310, 'samplingPopulation', 'unsigned'],
  [311, 'samplingProbability', 'float64'],
  [312, 'dataLinkFrameSize', 'unsigned'],
  [313, 'ipHeaderPacketSection', 'octets'],
  [314, 'ipPayloadPacketSection', 'octets'],
  [315, 'dataLinkFrameSection', 'octets'],
  [316, 'mplsLabelStackSection', 'octets'],
  [317, 'mplsPayloadPacketSection', 'octets'],
  [322, 'observationTimeSeconds', 'unsigned'],
  [323, 'observationTimeMilliseconds', 'unsigned'],
  [324, 'observationTimeMicroseconds', 'ntp'],
  [325, 'observationTimeNanoseconds', 'ntp'],
  [408, 'dataLinkFrameType', 'unsigned'],
  [409, 'sectionOffset', 'unsigned'],
];

/** RFC 5103 reverse information elements: the forward IE number under PEN 29305. */
export const REVERSE_PEN = 29305;
const REVERSE: ReadonlyArray<readonly [number, FieldName]> = [
  [1, 'reverseOctetDeltaCount'],
  [2, 'reversePacketDeltaCount'],
];

/** NetFlow v9 vendor field types (no PEN in v9). Cisco ASA NSEL: NF_F_FW_EVENT = 40005. */
const V9_VENDOR: ReadonlyArray<readonly [number, FieldName, FieldKind]> = [
  [40005, 'firewallEvent', 'unsigned'],
];

function key(id: number, enterprise: number): number {
  return enterprise * 65536 + id;
}

const table = new Map<number, FieldDef>();
for (const [id, name, kind] of IANA) {
  const lengthName = kind === 'octets' ? (`${name}Length` as FieldName) : undefined;
  table.set(
    key(id, 0),
    lengthName ? { id, enterprise: 0, name, kind, lengthName } : { id, enterprise: 0, name, kind },
  );
}
for (const [id, name] of REVERSE)
  table.set(key(id, REVERSE_PEN), { id, enterprise: REVERSE_PEN, name, kind: 'unsigned' });
for (const [id, name, kind] of V9_VENDOR) table.set(key(id, 0), { id, enterprise: 0, name, kind });

/** The definition for (id, enterprise), or undefined when flowsentry does not decode it. */
export function lookupField(id: number, enterprise: number): FieldDef | undefined {
  return table.get(key(id, enterprise));
}

/**
 * Byte lengths a field of this kind may have; other lengths are skipped (and counted) at template time.
 * Only octet arrays may be variable-length (65535).
 */
export function lengthFits(kind: FieldKind, length: number): boolean {
  switch (kind) {
    case 'octets':
      return true;
    case 'unsigned':
      return length >= 1 && length <= 8;
    case 'ipv4':
      return length === 4;
    case 'ipv6':
      return length === 16;
    case 'float64':
      return length === 8 || length === 4;
    case 'ntp':
      return length === 8;
  }
}

/** Well-known names for information elements that options records carry, for the API and logs. */
export const IE_INTERFACE_NAME = 82;
export const IE_INTERFACE_DESCRIPTION = 83;
export const IE_PADDING = 210;
