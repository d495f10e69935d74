import { addressBytesToString, ipv4ToString } from '../common/ip.js';
import type { FlowSink } from './decoder.js';
import type { FlowRow } from './flow-row.js';
import type { FieldName, RecordFields } from './record-fields.js';
import type { Template } from './template.js';

/** A decoded flow as a plain object: the flows table's columns plus the record's raw elements. */
export interface CollectedFlow {
  time_received: number;
  flow_start: number;
  flow_end: number;
  exporter_address: string;
  version: number;
  observation_domain_id: number;
  template_id: number;
  in_if: number;
  out_if: number;
  src_addr: string;
  dst_addr: string;
  next_hop: string;
  src_port: number;
  dst_port: number;
  proto: number;
  tcp_flags: number;
  tos: number;
  bytes: number;
  packets: number;
  sampling_rate: number;
  src_as: number;
  dst_as: number;
  src_mask: number;
  dst_mask: number;
  direction: number;
  icmp_type: number;
  icmp_code: number;
  src_vlan: number;
  dst_vlan: number;
  end_reason: number;
  firewall_event: number;
  reverse_bytes: number;
  reverse_packets: number;
  /** The information elements the record carried, by IANA name. */
  elements: Partial<Record<FieldName, number>>;
}

export function formatAddress(family: number, v4: number, buf: Uint8Array, off: number): string {
  if (family === 4) return ipv4ToString(v4);
  if (family === 6) return addressBytesToString(buf, off);
  return '::';
}

export function collectFlow(
  row: FlowRow,
  fields: RecordFields | null,
  template: Template | null,
): CollectedFlow {
  const elements: Partial<Record<FieldName, number>> = {};
  if (fields && template) {
    for (const [name, present] of Object.entries(template.layout.plan.has) as Array<[FieldName, boolean]>) {
      if (present) elements[name] = fields[name];
    }
  }
  return {
    time_received: row.timeReceivedMs,
    flow_start: row.flowStartMs,
    flow_end: row.flowEndMs,
    exporter_address: addressBytesToString(row.exporterAddress),
    version: row.version,
    observation_domain_id: row.observationDomainId,
    template_id: row.templateId,
    in_if: row.inIf,
    out_if: row.outIf,
    src_addr: formatAddress(row.srcFamily, row.srcV4, row.srcBuf, row.srcOff),
    dst_addr: formatAddress(row.dstFamily, row.dstV4, row.dstBuf, row.dstOff),
    next_hop: formatAddress(row.nextHopFamily, row.nextHopV4, row.nextHopBuf, row.nextHopOff),
    src_port: row.srcPort,
    dst_port: row.dstPort,
    proto: row.proto,
    tcp_flags: row.tcpFlags,
    tos: row.tos,
    bytes: row.bytes,
    packets: row.packets,
    sampling_rate: row.samplingRate,
    src_as: row.srcAs,
    dst_as: row.dstAs,
    src_mask: row.srcMask,
    dst_mask: row.dstMask,
    direction: row.direction,
    icmp_type: row.icmpType,
    icmp_code: row.icmpCode,
    src_vlan: row.srcVlan,
    dst_vlan: row.dstVlan,
    end_reason: row.endReason,
    firewall_event: row.firewallEvent,
    reverse_bytes: row.reverseBytes,
    reverse_packets: row.reversePackets,
    elements,
  };
}

/** Keeps every flow as a CollectedFlow (tests, the `decode` command). */
export class CollectingSink implements FlowSink {
  readonly flows: CollectedFlow[] = [];
  push(row: FlowRow, fields: RecordFields, template: Template): void {
    this.flows.push(collectFlow(row, fields, template));
  }
}
