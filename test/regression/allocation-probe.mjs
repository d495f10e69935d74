// Run with: node --expose-gc --single-threaded --max-semi-space-size=256 allocation-probe.mjs <dist dir> <kind>
// (--single-threaded: no background compilation or GC threads allocating while a pass is measured).
// Prints the heap bytes allocated per decoded record (no scavenge can run during the measurement: the
// young generation is larger than what the measured loop allocates).
const [dist, kind] = process.argv.slice(2);
const { Decoder } = await import(`${dist}/decoder/index.js`);
const { encodeRecord, ExportPacketBuilder, buildV5Packet } = await import(`${dist}/export/packet-builder.js`);
const { RowBinaryEncoder } = await import(`${dist}/storage/row-binary.js`);
const F = (id, length, enterprise = 0) => ({ id, length, enterprise });
const v9 = [
  F(8, 4),
  F(12, 4),
  F(7, 2),
  F(11, 2),
  F(4, 1),
  F(1, 8),
  F(2, 8),
  F(22, 4),
  F(21, 4),
  F(6, 1),
  F(10, 4),
  F(14, 4),
];
const ipfix = [
  F(27, 16),
  F(28, 16),
  F(7, 2),
  F(11, 2),
  F(4, 1),
  F(1, 8),
  F(2, 8),
  F(152, 8),
  F(153, 8),
  F(82, 65535),
  F(1, 8, 29305),
];
// Packet sections (PSAMP / RFC 7133): selectorId, interfaces, direction, frame size, the frame itself.
const section = [F(302, 4), F(10, 4), F(14, 4), F(61, 1), F(312, 2), F(315, 65535)];
const selector = [F(302, 4), F(304, 2), F(305, 4), F(306, 4)];
/** Ethernet, 802.1Q, IPv4 (addresses above 2^31), TCP: the section of one sampled packet. */
function frame(j) {
  const ip = [0x45, 0, 0x05, 0xdc, 0, 0, 0x40, 0, 64, 6, 0, 0, 203, 0, 113, j, 198, 51, 100, 200];
  const tcp = [0xc3, 0x50 + j, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0];
  return Uint8Array.from([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0, 0, 100, 0x08, 0, ...ip, ...tcp]);
}
const PACKETS = 2000;
const PER = 25;
const packets = [];
let template = null;
if (kind === 'v5') {
  for (let i = 0; i < PACKETS; i++)
    packets.push(
      buildV5Packet(
        { sysUptimeMs: 1e6, unixSecs: 1.8e9, sequence: i * 30 },
        Array.from({ length: 30 }, (_, j) => ({
          src: '192.168.0.1',
          dst: `203.0.113.${j}`,
          packets: 3_000_000_000,
          bytes: 4_000_000_000,
          firstUptimeMs: 1,
          lastUptimeMs: 2,
          srcPort: 1000 + j,
          dstPort: 80,
          proto: 6,
        })),
      ),
    );
} else if (kind === 'ipfix-section') {
  template = new ExportPacketBuilder(10, 1)
    .optionsTemplates([{ id: 400, scopeCount: 1, fields: selector }])
    .templates([{ id: 300, fields: section }])
    .data(400, [encodeRecord(selector, [1, 1, 1, 999])])
    .build({ exportSecs: 1.8e9, sequence: 0 });
  for (let i = 0; i < PACKETS; i++) {
    const recs = Array.from({ length: PER }, (_, j) =>
      encodeRecord(section, [1, 3_000_000_001, 2, 0, 1514, frame(j)]),
    );
    packets.push(
      new ExportPacketBuilder(10, 1).data(300, recs).build({ exportSecs: 1.8e9, sequence: 1 + i * PER }),
    );
  }
} else {
  const fields = kind === 'v9' ? v9 : ipfix;
  const version = kind === 'v9' ? 9 : 10;
  template = new ExportPacketBuilder(version, 1)
    .templates([{ id: 300, fields }])
    .build({ exportSecs: 1.8e9, sequence: 0, sysUptimeMs: 1e6 });
  for (let i = 0; i < PACKETS; i++) {
    const recs = Array.from({ length: PER }, (_, j) =>
      kind === 'v9'
        ? // Values beyond the small-integer range (addresses above 2^30, counters above 2^32), as in real
          // traffic, so a double boxed on its way through the hot path shows up here.
          encodeRecord(fields, [
            `192.168.0.${j}`,
            '203.0.113.9',
            1000 + j,
            443,
            6,
            6_000_000_000 + j,
            3_000_000_000,
            9000,
            9900,
            0x1b,
            3_000_000_001,
            2,
          ])
        : encodeRecord(fields, [
            '2001:db8::1',
            `2001:db8::${j + 2}`,
            1000 + j,
            443,
            6,
            6_000_000_000,
            3_000_000_000,
            1.8e12,
            1.8e12,
            'eth0',
            5_000_000_000,
          ]),
    );
    packets.push(
      new ExportPacketBuilder(version, 1)
        .data(300, recs)
        .build({ exportSecs: 1.8e9, sequence: version === 9 ? i + 1 : i * PER, sysUptimeMs: 1e6 }),
    );
  }
}
const encoder = new RowBinaryEncoder(64 << 20, () => encoder.take());
const decoder = new Decoder(encoder);
const exporter = decoder.exporter('192.0.2.1');
if (template) decoder.decode(exporter, template, 0);
for (let r = 0; r < 10; r++) for (const p of packets) decoder.decode(exporter, p, 1); // warm up: compile, optimise
// The least of several passes: anything V8 itself allocates now and then (feedback, code) shows up in
// one pass, an allocation per record shows up in all of them.
let best = Number.POSITIVE_INFINITY;
let measured = 0;
for (let pass = 0; pass < 5; pass++) {
  globalThis.gc();
  const before = process.memoryUsage().heapUsed;
  const records = decoder.counters.records;
  for (const p of packets) decoder.decode(exporter, p, 1);
  measured = decoder.counters.records - records;
  best = Math.min(best, (process.memoryUsage().heapUsed - before) / measured);
}
process.stdout.write(`${JSON.stringify({ kind, records: measured, bytesPerRecord: best })}\n`);
