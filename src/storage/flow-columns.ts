/**
 * The columns flowsentry writes to `flows`, in RowBinary order. The migration defines the table; a test
 * checks that DESCRIBE flows agrees with this list, and the insert names these columns explicitly.
 */
export const FLOW_COLUMNS = [
  ['time_received', "DateTime('UTC')"],
  ['flow_start', "DateTime64(3, 'UTC')"],
  ['flow_end', "DateTime64(3, 'UTC')"],
  ['exporter_address', 'IPv6'],
  ['version', 'UInt8'],
  ['observation_domain_id', 'UInt32'],
  ['in_if', 'UInt32'],
  ['out_if', 'UInt32'],
  ['src_addr', 'IPv6'],
  ['dst_addr', 'IPv6'],
  ['src_port', 'UInt16'],
  ['dst_port', 'UInt16'],
  ['proto', 'UInt8'],
  ['tcp_flags', 'UInt16'],
  ['tos', 'UInt8'],
  ['bytes', 'UInt64'],
  ['packets', 'UInt64'],
  ['sampling_rate', 'UInt32'],
  ['src_as', 'UInt32'],
  ['dst_as', 'UInt32'],
  ['src_mask', 'UInt8'],
  ['dst_mask', 'UInt8'],
  ['next_hop', 'IPv6'],
  ['direction', "Enum8('unknown' = 0, 'ingress' = 1, 'egress' = 2)"],
  ['icmp_type', 'UInt8'],
  ['icmp_code', 'UInt8'],
  ['src_vlan', 'UInt16'],
  ['dst_vlan', 'UInt16'],
  ['end_reason', 'UInt8'],
  ['firewall_event', 'UInt8'],
  ['reverse_bytes', 'UInt64'],
  ['reverse_packets', 'UInt64'],
] as const;

export type FlowColumn = (typeof FLOW_COLUMNS)[number][0];

export const FLOW_COLUMN_LIST = FLOW_COLUMNS.map(([name]) => name).join(', ');

/** The `structure` argument of file()/input() for a RowBinary spool file. */
export const FLOW_ROWBINARY_STRUCTURE = FLOW_COLUMNS.map(([name, type]) => `${name} ${type}`).join(', ');

/** Upper bound of one encoded row (no variable-length columns). */
export const MAX_ROW_BYTES =
  4 +
  8 +
  8 +
  16 +
  1 +
  4 +
  4 +
  4 +
  16 +
  16 +
  2 +
  2 +
  1 +
  2 +
  1 +
  8 +
  8 +
  4 +
  4 +
  4 +
  1 +
  1 +
  16 +
  1 +
  1 +
  1 +
  2 +
  2 +
  1 +
  1 +
  8 +
  8;
