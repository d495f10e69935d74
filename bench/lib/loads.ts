import { writeFileSync } from 'node:fs';
import {
  buildV5Packet,
  type ExportField,
  ExportPacketBuilder,
  encodeRecord,
  type V5Record,
} from '../../src/export/packet-builder.js';
import { writeUdpPcap } from '../../src/pcap/pcap.js';

const F = (id: number, length: number, enterprise = 0): ExportField => ({ id, length, enterprise });

/**
 * A NetFlow v9 IPv4 template with the fields of a v5 record (18 fields, 45 bytes): 31 records fill a
 * 1419-byte datagram, as a router packs them under a 1500-byte MTU.
 */
export const V9_E2E_FIELDS = [
  F(8, 4),
  F(12, 4),
  F(15, 4),
  F(10, 2),
  F(14, 2),
  F(2, 4),
  F(1, 4),
  F(22, 4),
  F(21, 4),
  F(7, 2),
  F(11, 2),
  F(6, 1),
  F(4, 1),
  F(5, 1),
  F(16, 2),
  F(17, 2),
  F(9, 1),
  F(13, 1),
];

/** The decode benchmark's v9 template (bench/RESULTS.md): 18 fields, 61 bytes, two 8-byte counters. */
export const V9_DECODE_FIELDS = [
  F(1, 8),
  F(2, 8),
  F(4, 1),
  F(5, 1),
  F(6, 1),
  F(7, 2),
  F(8, 4),
  F(9, 1),
  F(10, 4),
  F(11, 2),
  F(12, 4),
  F(13, 1),
  F(14, 4),
  F(15, 4),
  F(16, 4),
  F(17, 4),
  F(21, 4),
  F(22, 4),
];

/** IPFIX with variable-length strings (NetScaler/Ixia style) and reverse counters. */
export const IPFIX_VARLEN_FIELDS = [
  F(8, 4),
  F(12, 4),
  F(7, 2),
  F(11, 2),
  F(4, 1),
  F(1, 8),
  F(2, 8),
  F(152, 8),
  F(153, 8),
  F(82, 65535),
  F(1, 8, 29305),
  F(2, 8, 29305),
  F(100, 65535, 5951),
  F(6, 2),
];

function v4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/**
 * `records` unique flows (distinct 5-tuples, so aggregating peers cannot merge them), `perPacket` per
 * datagram, template in the first datagram and again every 1000 (as its own datagram).
 */
export function buildV9Load(records: number, perPacket: number, nowSecs: number): Uint8Array[] {
  const packets: Uint8Array[] = [];
  let sequence = 0;
  const header = () => ({ exportSecs: nowSecs, sequence: sequence++, sysUptimeMs: 3_600_000 });
  const template = () =>
    new ExportPacketBuilder(9, 0).templates([{ id: 256, fields: V9_E2E_FIELDS }]).build(header());
  for (let i = 0; i < records; i += perPacket) {
    if (packets.length % 1000 === 0) packets.push(template());
    const recs: Uint8Array[] = [];
    for (let j = i; j < Math.min(records, i + perPacket); j++) {
      recs.push(
        encodeRecord(V9_E2E_FIELDS, [
          v4(0x0a000000 + (j >>> 8)),
          v4(0xc0a80000 + (j & 0xffff)),
          '10.255.0.1',
          1,
          2,
          1 + (j % 50),
          64 * (1 + (j % 50)),
          3_500_000,
          3_599_000,
          1024 + (j % 60000),
          [53, 80, 443, 123, 22][j % 5]!,
          0x1b,
          j % 5 === 0 ? 17 : 6,
          0,
          64512,
          64513,
          8,
          16,
        ]),
      );
    }
    packets.push(new ExportPacketBuilder(9, 0).data(256, recs).build(header()));
  }
  return packets;
}

export function buildDecodeLoad(
  kind: 'v9' | 'v5' | 'ipfix-varlen',
  packetsWanted: number,
  perPacket: number,
): {
  template: Uint8Array | null;
  packets: Uint8Array[];
} {
  const secs = 1_800_000_000;
  if (kind === 'v5') {
    const packets = Array.from({ length: packetsWanted }, (_, i) =>
      buildV5Packet(
        { sysUptimeMs: 3_600_000, unixSecs: secs, sequence: i * perPacket },
        Array.from(
          { length: perPacket },
          (_, j): V5Record => ({
            src: v4(0x0a000000 + i),
            dst: v4(0xc0a80000 + j),
            nextHop: '10.255.0.1',
            input: 1,
            output: 2,
            packets: 10,
            bytes: 1000 + j,
            firstUptimeMs: 3_500_000,
            lastUptimeMs: 3_599_000,
            srcPort: 40000 + j,
            dstPort: 443,
            tcpFlags: 0x1b,
            proto: 6,
            srcAs: 64512,
            dstAs: 64513,
            srcMask: 8,
            dstMask: 16,
          }),
        ),
      ),
    );
    return { template: null, packets };
  }
  const version = kind === 'v9' ? 9 : 10;
  const fields = kind === 'v9' ? V9_DECODE_FIELDS : IPFIX_VARLEN_FIELDS;
  const template = new ExportPacketBuilder(version, 0)
    .templates([{ id: 256, fields }])
    .build({ exportSecs: secs, sequence: 0, sysUptimeMs: 1e6 });
  const packets: Uint8Array[] = [];
  let sequence = 0;
  for (let i = 0; i < packetsWanted; i++) {
    const recs = Array.from({ length: perPacket }, (_, j) =>
      kind === 'v9'
        ? encodeRecord(fields, [
            1000 + j,
            10,
            6,
            0,
            0x1b,
            40000 + j,
            v4(0x0a000000 + i),
            24,
            3,
            443,
            v4(0xc0a80000 + j),
            24,
            5,
            '10.0.0.254',
            65000,
            65001,
            999_000,
            990_000,
          ])
        : encodeRecord(fields, [
            v4(0x0a000000 + i),
            v4(0xc0a80000 + j),
            40000 + j,
            443,
            6,
            1000 + j,
            10,
            secs * 1000 - 9000,
            secs * 1000,
            `xe-0/0/${j % 8}`,
            5000,
            12,
            `GET /index-${j}.html`,
            0x1b,
          ]),
    );
    const builder = new ExportPacketBuilder(version, 0).data(256, recs);
    packets.push(builder.build({ exportSecs: secs, sequence, sysUptimeMs: 1e6 }));
    sequence += version === 10 ? perPacket : 1;
  }
  return { template, packets };
}

/** Writes datagrams as a pcap from 127.0.0.1:40000 to 127.0.0.1:`port` (for udpblast and replay). */
export function writeLoadPcap(path: string, packets: readonly Uint8Array[], port: number): void {
  writeFileSync(
    path,
    writeUdpPcap(
      packets.map((payload, i) => ({
        timeMs: 1_800_000_000_000 + i,
        srcAddress: '127.0.0.1',
        dstAddress: '127.0.0.1',
        srcPort: 40000,
        dstPort: port,
        payload,
      })),
    ),
  );
}
