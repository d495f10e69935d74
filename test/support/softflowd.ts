import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { accessSync, constants } from 'node:fs';
import net from 'node:net';
import { delimiter, join } from 'node:path';

/** Daemons live in sbin, which is not on every user's PATH. */
export function findTool(command: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    try {
      accessSync(join(dir, command), constants.X_OK);
      return join(dir, command);
    } catch {
      // Not in this directory.
    }
  }
  return null;
}

export interface ExportedDatagram {
  readonly payload: Uint8Array;
  /** The export time the datagram's header carries (epoch ms): softflowd -a takes it from the packets. */
  readonly exportMs: number;
}

export interface SoftflowdOptions {
  /** 9 (NetFlow v9) or 10 (IPFIX, default). */
  readonly version?: 5 | 9 | 10;
  /** softflowd -t timeouts, e.g. { maxlife: 300 } (active timeout), { tcp: 60 }. */
  readonly timeouts?: Readonly<Record<string, number>>;
  /** Flows tracked at once (default 65536; softflowd's own default, 8192, would expire flows early). */
  readonly maxFlows?: number;
  /**
   * How the export reaches this process: IPFIX goes over TCP by default (RFC 7011 §10.4: messages
   * delimited by their length field), because softflowd reading a file sends as fast as it can and a
   * burst of tens of thousands of datagrams overflows any UDP socket buffer; NetFlow v5/v9 (no length
   * field) go over UDP.
   */
  readonly transport?: 'udp' | 'tcp';
}

/**
 * Runs softflowd over a pcap (-r, with -a so that flow and export times come from the packets) and
 * collects every export message it sends to this process (see `transport`).
 */
export async function exportWithSoftflowd(
  pcap: string,
  dir: string,
  options: SoftflowdOptions = {},
): Promise<{ datagrams: ExportedDatagram[]; output: string }> {
  const tool = findTool('softflowd');
  if (!tool) throw new Error('softflowd is not installed (apt-get install -y softflowd)');
  const datagrams: ExportedDatagram[] = [];
  let lastReceived = Date.now();
  const take = (payload: Uint8Array) => {
    lastReceived = Date.now();
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const version = view.getUint16(0);
    // v5/v9: unix_secs at offset 8 (v5 adds nanoseconds); IPFIX: export time at offset 4.
    const exportMs =
      version === 10
        ? view.getUint32(4) * 1000
        : version === 5
          ? view.getUint32(8) * 1000 + Math.floor(view.getUint32(12) / 1e6)
          : view.getUint32(8) * 1000;
    datagrams.push({ payload, exportMs });
  };
  const tcp = (options.transport ?? ((options.version ?? 10) === 10 ? 'tcp' : 'udp')) === 'tcp';
  let port: number;
  let close: () => Promise<void>;
  let streamEnded: Promise<void> = Promise.resolve();
  if (tcp) {
    let ended: () => void = () => undefined;
    streamEnded = new Promise<void>((resolve) => {
      ended = resolve;
    });
    const server = net.createServer((conn) => {
      let pending: Buffer = Buffer.alloc(0);
      conn.on('data', (chunk: Buffer) => {
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
        while (pending.length >= 4) {
          const length = pending.readUInt16BE(2);
          if (length < 16 || pending.length < length) break;
          take(new Uint8Array(pending.subarray(0, length)));
          pending = pending.subarray(length);
        }
      });
      conn.on('close', () => ended());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    port = (server.address() as net.AddressInfo).port;
    close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  } else {
    const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 32 * 1024 * 1024 });
    socket.on('message', (message) => take(new Uint8Array(message)));
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
    port = socket.address().port;
    close = () => new Promise<void>((resolve) => socket.close(() => resolve()));
  }
  const args = ['-r', pcap, '-n', `127.0.0.1:${port}`, '-v', String(options.version ?? 10), '-d', '-a'];
  if (tcp) args.push('-P', 'tcp');
  // No -c: softflowd 1.1.0 reading a file (-r) hangs at its end when given a control socket path of
  // 13 characters or more; without -c it opens none in this mode.
  args.push('-m', String(options.maxFlows ?? 65_536), '-p', join(dir, `softflowd-${port}.pid`));
  for (const [name, seconds] of Object.entries(options.timeouts ?? {})) args.push('-t', `${name}=${seconds}`);
  const child = spawn(tool, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = `$ softflowd ${args.join(' ')}\n`;
  child.stdout.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`softflowd did not exit within 300 s:\n${output}`));
    }, 300_000);
    child.once('error', reject);
    child.once('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  if (code !== 0) throw new Error(`softflowd exited with ${code}:\n${output}`);
  if (tcp) await streamEnded;
  else while (Date.now() - lastReceived < 300) await new Promise((r) => setTimeout(r, 50));
  await close();
  return { datagrams, output };
}
