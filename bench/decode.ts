import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Decoder } from '../src/decoder/index.js';
import { RowBinaryEncoder } from '../src/storage/row-binary.js';
import { table } from './lib/common.js';
import { buildDecodeLoad } from './lib/loads.js';

/**
 * Decode throughput on one core (this thread), the same datagrams for every decoder: records per
 * second, median of RUNS passes over PACKETS datagrams after a warm-up pass. node-netflowv9 (the only
 * maintained JS decoder) decodes v5 and v9; it has no IPFIX.
 */
const require = createRequire(import.meta.url);
const NetFlowV9 = require('node-netflowv9') as (options: { cb: () => void }) => {
  nfPktDecode(
    msg: Buffer,
    rinfo: { address: string; port: number; size: number },
  ): { flows: unknown[] } | undefined;
  server: { close(): void };
};

const PACKETS = Number(process.env.BENCH_DECODE_PACKETS ?? 20_000);
const RUNS = Number(process.env.BENCH_DECODE_RUNS ?? 7);

interface Load {
  name: string;
  kind: 'v9' | 'v5' | 'ipfix-varlen';
  perPacket: number;
  describe: string;
}

const LOADS: Load[] = [
  {
    name: 'NetFlow v9',
    kind: 'v9',
    perPacket: 25,
    describe: '18 fields, 61-byte records, two 8-byte counters, 25 per datagram',
  },
  { name: 'NetFlow v5', kind: 'v5', perPacket: 30, describe: '48-byte records, 30 per datagram' },
  {
    name: 'IPFIX, variable-length',
    kind: 'ipfix-varlen',
    perPacket: 10,
    describe:
      '14 fields incl. 2 variable-length strings, an enterprise element and RFC 5103 reverse counters, 10 per datagram',
  },
];

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function measure(pass: () => number): number {
  pass();
  const rates: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const started = process.hrtime.bigint();
    const records = pass();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    rates.push(records / seconds);
  }
  return median(rates);
}

function flowsentry(template: Uint8Array | null, packets: Uint8Array[], encode: boolean): number {
  let counted = 0;
  const encoder = new RowBinaryEncoder(64 * 1024 * 1024, () => {
    encoder.take();
  });
  // Decode only: the sink receives every normalised row, as the encoder would.
  const sink = encode ? encoder : { push: () => void counted++ };
  const decoder = new Decoder(sink);
  const exporter = decoder.exporter('192.0.2.1');
  if (template) decoder.decode(exporter, template, 0);
  return measure(() => {
    const before = decoder.counters.records;
    for (const p of packets) decoder.decode(exporter, p, 1);
    return decoder.counters.records - before;
  });
}

function nodeNetflowv9(template: Uint8Array | null, packets: Uint8Array[]): number {
  const collector = NetFlowV9({ cb: () => undefined });
  const rinfo = { address: '192.0.2.1', port: 2055, size: 0 };
  const buffers = packets.map((p) => Buffer.from(p));
  if (template) collector.nfPktDecode(Buffer.from(template), rinfo);
  const rate = measure(() => {
    let records = 0;
    for (const b of buffers) records += collector.nfPktDecode(b, rinfo)?.flows.length ?? 0;
    return records;
  });
  collector.server.close();
  return rate;
}

export async function main(): Promise<string> {
  const rows: Array<Array<string | number>> = [];
  const m = (rate: number) => (rate / 1e6).toFixed(2);
  for (const load of LOADS) {
    const { template, packets } = buildDecodeLoad(load.kind, PACKETS, load.perPacket);
    const ours = flowsentry(template, packets, false);
    const oursEncoded = flowsentry(template, packets, true);
    const peer = load.kind === 'ipfix-varlen' ? null : nodeNetflowv9(template, packets);
    rows.push([
      `${load.name}: ${load.describe}`,
      m(ours),
      m(oursEncoded),
      peer === null ? 'no IPFIX support' : m(peer),
      peer === null ? '' : `${(ours / peer).toFixed(1)}x`,
    ]);
    process.stderr.write(`decode ${load.name}: ${m(ours)} M/s (peer ${peer === null ? '-' : m(peer)})\n`);
  }
  return [
    '### Decode, one core',
    '',
    `Records per second on one thread, median of ${RUNS} passes over the same ${PACKETS.toLocaleString('en')} datagrams after a warm-up pass. ` +
      '"decode" is flowsentry\'s whole decode into a normalised row (what node-netflowv9 does into a JS object per record); ' +
      '"decode + RowBinary" adds encoding the row for ClickHouse, as the collector does.',
    '',
    table(
      [
        'load',
        'flowsentry decode (M rec/s)',
        'flowsentry decode + RowBinary (M rec/s)',
        'node-netflowv9 0.2.16 (M rec/s)',
        'ratio',
      ],
      rows,
    ),
    '',
    'Command: `npm run bench -- decode`',
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${await main()}\n`);
}
