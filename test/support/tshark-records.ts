import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeUdpPcap } from '../../src/pcap/pcap.js';
import { tempDir } from './temp.js';
import { tsharkVersion } from './tshark.js';

/**
 * tshark as an oracle for single elements and for packet headers, where tshark.ts (whole flow records
 * of real exporters) is too coarse: the records of built export packets as tshark's cflow dissector
 * shows them, and the headers of raw frames (packet sections) as tshark's own dissectors read them.
 */

export type Json = string | Json[] | { [key: string]: Json };
export type Tree = { [key: string]: Json };

/** Whether tshark can be run here; tests that need it skip with this reason otherwise. */
export const TSHARK_MISSING =
  tsharkVersion() === null ? 'tshark not installed (apt-get install -y tshark)' : null;

const ENV = { ...process.env, TZ: 'UTC', LC_ALL: 'C' };

/**
 * Every data and options record tshark decodes from these export datagrams (sent from 192.0.2.10 to
 * port 4739 in a capture), in order: the record's cflow fields, with the set id it came in.
 */
export function tsharkExportRecords(
  datagrams: readonly Uint8Array[],
): Array<{ setId: number; fields: Tree }> {
  const dir = tempDir('flowsentry-tshark-');
  try {
    const file = join(dir.path, 'export.pcap');
    writeFileSync(
      file,
      writeUdpPcap(
        datagrams.map((payload, i) => ({
          timeMs: 1_800_000_000_000 + i,
          srcAddress: '192.0.2.10',
          dstAddress: '192.0.2.1',
          srcPort: 50_000,
          dstPort: 4739,
          payload,
        })),
      ),
    );
    const out = execFileSync(
      'tshark',
      ['-n', '-r', file, '-d', 'udp.port==4739,cflow', '-T', 'json', '--no-duplicate-keys'],
      { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: ENV, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const records: Array<{ setId: number; fields: Tree }> = [];
    for (const frame of JSON.parse(out) as Array<{ _source: { layers: Tree } }>) {
      const cflow = frame._source.layers['cflow'];
      if (cflow === undefined || typeof cflow === 'string' || Array.isArray(cflow))
        throw new Error('tshark did not decode a frame as one cflow PDU');
      for (const [key, set] of Object.entries(cflow)) {
        const m = /^Set \d+ \[id=(\d+)\]/.exec(key);
        if (!m || Number(m[1]) < 256) continue;
        for (const [rk, record] of Object.entries(set as Tree)) {
          if (rk.startsWith('Flow ')) records.push({ setId: Number(m[1]), fields: record as Tree });
        }
      }
    }
    return records;
  } finally {
    dir.remove();
  }
}

/** A string field of a tshark tree (throws when absent or repeated). */
export function field(tree: Tree, key: string): string {
  const value = tree[key];
  if (typeof value !== 'string') throw new Error(`tshark field ${key}: ${JSON.stringify(value)}`);
  return value;
}

/** libpcap link types used for packet sections. */
export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;

/**
 * Decodes raw frames of one link type with tshark's dissectors and returns, per frame, the first
 * occurrence of each requested field ('' when tshark shows none): `-E occurrence=f` is the outermost
 * header, which is what flowsentry stores for a tunnelled packet.
 */
export function tsharkFrameFields(
  linktype: number,
  frames: readonly Uint8Array[],
  fields: readonly string[],
  decodeAs: readonly string[] = [],
): Array<Record<string, string>> {
  const dir = tempDir('flowsentry-tshark-');
  try {
    const file = join(dir.path, 'frames.pcap');
    writeFileSync(file, framePcap(linktype, frames));
    // No reassembly: a first fragment's transport header is dissected as it is, as a collector reads it.
    const args = ['-n', '-r', file, '-o', 'ip.defragment:FALSE', '-o', 'ipv6.defragment:FALSE'];
    args.push('-T', 'fields', '-E', 'occurrence=f', '-E', 'separator=/t');
    for (const d of decodeAs) args.push('-d', d);
    for (const f of fields) args.push('-e', f);
    const out = execFileSync('tshark', args, {
      encoding: 'utf8',
      env: ENV,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return out
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => {
        const values = line.split('\t');
        return Object.fromEntries(fields.map((f, i) => [f, values[i] ?? '']));
      });
  } finally {
    dir.remove();
  }
}

/** A classic pcap file (microsecond timestamps) holding `frames` as captured with `linktype`. */
function framePcap(linktype: number, frames: readonly Uint8Array[]): Uint8Array {
  const size = 24 + frames.reduce((s, f) => s + 16 + f.byteLength, 0);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0xa1b2c3d4, true);
  v.setUint16(4, 2, true);
  v.setUint16(6, 4, true);
  v.setUint32(16, 65535, true);
  v.setUint32(20, linktype, true);
  let p = 24;
  frames.forEach((frame, i) => {
    v.setUint32(p, 1_800_000_000 + i, true);
    v.setUint32(p + 8, frame.byteLength, true);
    v.setUint32(p + 12, frame.byteLength, true);
    out.set(frame, p + 16);
    p += 16 + frame.byteLength;
  });
  return out;
}
