import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { readdirSync, readFileSync } from 'node:fs';
import {
  type ExportField,
  ExportPacketBuilder,
  encodeRecord,
  type FieldValue,
} from '../../src/export/packet-builder.js';
import { freeTcpPort, freeUdpPort, waitUntilHealthy } from '../../test/support/service.js';
import { CLI, sleep } from './common.js';

/**
 * A fleet of synthetic IPFIX exporters for the memory benchmark, and a `flowsentry serve` child to
 * send them to (the pattern of test/support/service.ts, with the CLI path taken from bench/lib/common.ts
 * because the compiled bench lives in .bench/build/).
 */

/** What a record carries; each layout picks its fields from it. */
interface RecordValues {
  src4: string;
  dst4: string;
  src6: string;
  dst6: string;
  sport: number;
  dport: number;
  bytes: number;
  packets: number;
  reverseBytes: number;
  startMs: number;
  endMs: number;
  startSecs: number;
  endSecs: number;
  durationMs: number;
  ifName: string;
}

interface Layout {
  readonly name: string;
  readonly fields: readonly ExportField[];
  values(v: RecordValues): FieldValue[];
}

/**
 * A layout written as `id[.enterprise]/length=value` items: the value is a RecordValues key or a
 * literal number or address. Compact enough to read ten layouts side by side.
 */
function layout(name: string, spec: string): Layout {
  const items = spec.split(/\s+/).map((item) => {
    const m = /^(\d+)(?:\.(\d+))?\/(\d+)=(.+)$/.exec(item);
    if (!m) throw new Error(`bad layout item ${item}`);
    const field: ExportField = { id: Number(m[1]), length: Number(m[3]), enterprise: Number(m[2] ?? 0) };
    const value = m[4]!;
    // A bare identifier names a RecordValues key (addresses such as fd00::1 have colons or dots).
    const get = /^[a-z][A-Za-z0-9]*$/.test(value)
      ? (v: RecordValues): FieldValue => {
          const got = v[value as keyof RecordValues];
          if (got === undefined) throw new Error(`layout ${name}: no record value ${value}`);
          return got;
        }
      : (): FieldValue => (/^\d+$/.test(value) ? Number(value) : value);
    return { field, get };
  });
  return { name, fields: items.map((i) => i.field), values: (v) => items.map((i) => i.get(v)) };
}

/**
 * Ten field layouts as a mixed fleet exports them (routers, IPv6, NSEL-style firewalls, biflow probes
 * with RFC 5103 reverse counters (enterprise 29305), reduced-size encodings, a variable-length field):
 * every exporter announces the same ten.
 */
export const LAYOUTS: readonly Layout[] = [
  layout(
    'ipv4-basic',
    '8/4=src4 12/4=dst4 7/2=sport 11/2=dport 4/1=6 6/1=27 5/1=0 1/8=bytes 2/8=packets 152/8=startMs 153/8=endMs 10/4=1 14/4=2',
  ),
  layout(
    'ipv4-bgp',
    '8/4=src4 12/4=dst4 9/1=24 13/1=16 7/2=sport 11/2=dport 4/1=6 6/1=27 1/4=bytes 2/4=packets 16/4=64512 17/4=15169 15/4=10.255.1.1 152/8=startMs 153/8=endMs',
  ),
  layout(
    'ipv6',
    '27/16=src6 28/16=dst6 7/2=sport 11/2=dport 4/1=6 6/1=27 1/8=bytes 2/8=packets 152/8=startMs 153/8=endMs 10/4=3 14/4=4',
  ),
  layout(
    'ipv6-routing',
    '27/16=src6 28/16=dst6 29/1=64 30/1=48 62/16=fd00::1 7/2=sport 11/2=dport 4/1=17 1/8=bytes 2/8=packets 152/8=startMs 153/8=endMs',
  ),
  layout(
    'ipv4-vlan',
    '8/4=src4 12/4=dst4 7/2=sport 11/2=dport 4/1=6 6/1=27 58/2=100 61/1=0 1/8=bytes 2/8=packets 150/4=startSecs 151/4=endSecs',
  ),
  layout('icmp', '8/4=src4 12/4=dst4 4/1=1 32/2=2048 1/4=bytes 2/4=packets 152/8=startMs 153/8=endMs'),
  layout(
    'biflow',
    '8/4=src4 12/4=dst4 7/2=sport 11/2=dport 4/1=6 6/1=27 1/8=bytes 2/8=packets 1.29305/8=reverseBytes 2.29305/8=packets 152/8=startMs 153/8=endMs 136/1=3',
  ),
  layout(
    'nsel',
    '8/4=src4 12/4=dst4 7/2=sport 11/2=dport 4/1=6 231/8=bytes 232/8=reverseBytes 298/8=packets 299/8=packets 233/1=2 152/8=startMs 153/8=endMs',
  ),
  layout(
    'reduced-duration',
    '8/4=src4 12/4=dst4 7/2=sport 11/2=dport 4/1=17 6/1=0 1/4=bytes 2/2=packets 153/8=endMs 161/4=durationMs 5/1=40',
  ),
  layout(
    'varlen-name',
    '8/4=src4 12/4=dst4 7/2=sport 11/2=dport 4/1=6 6/1=27 1/8=bytes 2/8=packets 152/8=startMs 153/8=endMs 82/65535=ifName',
  ),
];

export const FIRST_TEMPLATE_ID = 256;
const DOMAIN = 1;

/** Exporter `n` (1-based) sends from 127.1.(n >> 8).(n & 255); every 127.0.0.0/8 address is local on Linux. */
export function exporterAddress(n: number): string {
  return `127.1.${(n >>> 8) & 255}.${n & 255}`;
}

function recordValues(exporter: number, record: number, nowMs: number): RecordValues {
  const r = record & 255;
  const sport = 32768 + ((exporter * 131 + record) % 28000);
  const bytes = 100 + record * 7;
  const startMs = nowMs - 10_000;
  const endMs = nowMs - 1_000;
  return {
    src4: `10.${(exporter >>> 8) & 255}.${exporter & 255}.${1 + (r % 250)}`,
    dst4: `198.18.${r}.${exporter & 255}`,
    src6: `fd00::${exporter.toString(16)}:${r.toString(16)}`,
    dst6: `2001:db8::${record.toString(16)}`,
    sport,
    dport: [443, 80, 53, 22, 123][record % 5]!,
    bytes,
    packets: 1 + (record % 10),
    reverseBytes: bytes * 3,
    startMs,
    endMs,
    startSecs: Math.floor(startMs / 1000),
    endSecs: Math.floor(endMs / 1000),
    durationMs: endMs - startMs,
    ifName: `xe-0/0/${sport % 48}`,
  };
}

/**
 * One exporter's traffic: a packet announcing the ten templates (IDs 256-265), then `dataPackets`
 * packets each holding `perTemplate` records of every template. IPFIX sequence numbers count data
 * records, as the collector checks them.
 */
export function exporterPackets(
  exporter: number,
  dataPackets: number,
  perTemplate: number,
  nowMs: number,
  withTemplates = true,
): { packets: Uint8Array[]; records: number } {
  const exportSecs = Math.floor(nowMs / 1000);
  const packets: Uint8Array[] = [];
  if (withTemplates) {
    packets.push(
      new ExportPacketBuilder(10, DOMAIN)
        .templates(LAYOUTS.map((l, i) => ({ id: FIRST_TEMPLATE_ID + i, fields: l.fields })))
        .build({ exportSecs, sequence: 0 }),
    );
  }
  let sequence = 0;
  let record = 0;
  for (let p = 0; p < dataPackets; p++) {
    const builder = new ExportPacketBuilder(10, DOMAIN);
    LAYOUTS.forEach((layout, i) => {
      const records = Array.from({ length: perTemplate }, () =>
        encodeRecord(layout.fields, layout.values(recordValues(exporter, record++, nowMs))),
      );
      builder.data(FIRST_TEMPLATE_ID + i, records);
    });
    packets.push(builder.build({ exportSecs, sequence }));
    sequence += builder.dataRecords;
  }
  return { packets, records: record };
}

/**
 * A template flood from one exporter: `count` template IDs (256 upwards), each with its own layout (an
 * enterprise-specific field whose number differs), `perPacket` templates per packet, each followed by
 * one record so that the collector builds a decoder for every layout.
 */
export function floodPackets(
  exporter: number,
  count: number,
  perPacket: number,
  nowMs: number,
): { packets: Uint8Array[]; records: number } {
  const exportSecs = Math.floor(nowMs / 1000);
  const base = LAYOUTS[0]!;
  const packets: Uint8Array[] = [];
  let sequence = 0;
  for (let first = 0; first < count; first += perPacket) {
    const builder = new ExportPacketBuilder(10, DOMAIN);
    const ids = Array.from({ length: Math.min(perPacket, count - first) }, (_, i) => first + i);
    const layouts = ids.map((k): ExportField[] => [
      ...base.fields,
      { id: 1 + k, length: 4, enterprise: 32473 },
    ]);
    builder.templates(ids.map((k, i) => ({ id: FIRST_TEMPLATE_ID + k, fields: layouts[i]! })));
    ids.forEach((k, i) => {
      builder.data(FIRST_TEMPLATE_ID + k, [
        encodeRecord(layouts[i]!, [...base.values(recordValues(exporter, k, nowMs)), k]),
      ]);
    });
    packets.push(builder.build({ exportSecs, sequence }));
    sequence += builder.dataRecords;
  }
  return { packets, records: count };
}

/**
 * Sends each exporter's packets in order from its own address, `concurrency` exporters at a time,
 * pausing `pauseMs` between groups and after every `burst` packets of one exporter, so that neither the
 * 4 MiB socket buffer (net.core.rmem_max here) nor the collector's packet ring overflows.
 */
export async function sendFleet(
  fleet: ReadonlyArray<{ address: string; packets: readonly Uint8Array[] }>,
  port: number,
  options: { concurrency?: number; pauseMs?: number; burst?: number } = {},
): Promise<number> {
  const { concurrency = 50, pauseMs = 20, burst = 1000 } = options;
  let sent = 0;
  for (let i = 0; i < fleet.length; i += concurrency) {
    await Promise.all(
      fleet.slice(i, i + concurrency).map(async ({ address, packets }) => {
        const socket = dgram.createSocket('udp4');
        await new Promise<void>((resolve, reject) => {
          socket.once('error', reject);
          socket.bind(0, address, () => resolve());
        });
        for (const [k, payload] of packets.entries()) {
          await new Promise<void>((resolve, reject) =>
            socket.send(payload, port, '127.0.0.1', (e) => (e ? reject(e) : resolve())),
          );
          sent++;
          if ((k + 1) % burst === 0) await sleep(pauseMs);
        }
        await new Promise<void>((resolve) => socket.close(() => resolve()));
      }),
    );
    await sleep(pauseMs);
  }
  return sent;
}

/**
 * `copies` repetitions of a v9 load (template first), with the header sequence numbers rewritten so
 * that they keep counting up: enough bytes to pass through the whole packet ring without encoding
 * millions of records in JavaScript. Repeated flows are stored again (the store does not deduplicate
 * rows), so records sent and stored still compare.
 */
export function repeatV9(load: readonly Uint8Array[], copies: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let sequence = 0;
  for (let c = 0; c < copies; c++) {
    for (const packet of load) {
      // The template packet is re-sent only in the first copy; it stays known.
      if (c > 0 && packet === load[0]) continue;
      const copy = packet.slice();
      new DataView(copy.buffer).setUint32(12, sequence++);
      out.push(copy);
    }
  }
  return out;
}

export interface BenchService {
  readonly process: ChildProcess;
  readonly pid: number;
  readonly udpPort: number;
  get<T>(path: string): Promise<T>;
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts `flowsentry serve` (dist/cli.js) with one UDP listener on a free port and waits for /healthz. */
export async function startBenchService(
  dataDir: string,
  env: Record<string, string> = {},
): Promise<BenchService> {
  const [udpPort, httpPort] = [await freeUdpPort(), await freeTcpPort()];
  const http = `http://127.0.0.1:${httpPort}`;
  let output = '';
  const child = spawn(process.execPath, [CLI, 'serve'], {
    env: {
      ...process.env,
      FLOWSENTRY_DATA_DIR: dataDir,
      FLOWSENTRY_LISTEN_UDP: `127.0.0.1:${udpPort}`,
      FLOWSENTRY_LISTEN_HTTP: `127.0.0.1:${httpPort}`,
      FLOWSENTRY_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const collect = (d: Buffer) => {
    // Keep the tail only: the log is for the error message if start-up fails.
    output = (output + d.toString()).slice(-20_000);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const get = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${http}${path}`);
    if (!response.ok) throw new Error(`GET ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  };
  await waitUntilHealthy(child, http, () => output);
  return {
    process: child,
    pid: child.pid!,
    udpPort,
    get,
    output: () => output,
    async stop(graceMs = 30_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Direct children of `pid` (every thread's children list, /proc/<pid>/task/<tid>/children). */
export function childPids(pid: number): number[] {
  const out = new Set<number>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      for (const child of text.split(/\s+/)) if (child) out.add(Number(child));
    }
  } catch {
    // The process is gone.
  }
  return [...out];
}

/** The collector process the service forked (its command line names collector-process.js). */
export function collectorPid(servicePid: number): number | null {
  for (const pid of childPids(servicePid)) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('collector-process.js')) return pid;
    } catch {
      // Exited meanwhile.
    }
  }
  return null;
}

/** Current and peak resident memory (VmRSS, VmHWM) of a process in MiB; zeros when it is gone. */
export function rssMiB(pid: number): { now: number; peak: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
    return { now: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 };
  } catch {
    return { now: 0, peak: 0 };
  }
}
