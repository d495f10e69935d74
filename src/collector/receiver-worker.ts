import dgram from 'node:dgram';
import { parentPort, workerData } from 'node:worker_threads';
import { errorMessage } from '../common/errors.js';
import { parseAddress, parseHostPort } from '../common/ip.js';
import { currentThreadId, setThisThreadNice, type ThreadPriority } from '../common/thread-priority.js';
import { RingWriter } from './packet-ring.js';
import { RECEIVER_FIELDS } from './receiver-stats.js';

/**
 * The receive thread: owns the UDP sockets and does nothing but copy each datagram, with its source
 * address and arrival time, into the ring of the decoder thread that owns that exporter. Decoding and
 * storage happen elsewhere, so a slow store never stops the socket from being read.
 */
export interface ReceiverWorkerData {
  listen: string[];
  receiveBufferBytes: number;
  /** Nice value for this thread (collector.receiveNice); 0 leaves it as created. */
  receiveNice: number;
  rings: SharedArrayBuffer[];
  stats: SharedArrayBuffer;
}

export type ReceiverMessage =
  | {
      type: 'listening';
      listeners: Array<{ listen: string; address: string; port: number; receiveBufferBytes: number }>;
      priority: ThreadPriority | null;
      /** This thread's ID (Linux), so that status can report its nice value. */
      tid: number | null;
    }
  | { type: 'error'; message: string }
  | { type: 'stopped' };

const data = workerData as ReceiverWorkerData;
const port = parentPort!;
const writers = data.rings.map((r) => new RingWriter(r));
const FIELDS = RECEIVER_FIELDS.length;

interface Source {
  readonly bytes: Uint8Array;
  readonly writer: RingWriter;
}
// Exporters are few; cache each source address's bytes and ring (bounded, in case of spoofed floods).
const sources = new Map<string, Source>();

function sourceFor(address: string): Source {
  let source = sources.get(address);
  if (source === undefined) {
    if (sources.size >= 65_536) sources.clear();
    const bytes = parseAddress(address) ?? new Uint8Array(16);
    let hash = 0;
    for (const b of bytes) hash = (hash * 31 + b) >>> 0;
    source = { bytes, writer: writers[hash % writers.length]! };
    sources.set(address, source);
  }
  return source;
}

const sockets: dgram.Socket[] = [];

async function bindAll(): Promise<void> {
  const listeners: Extract<ReceiverMessage, { type: 'listening' }>['listeners'] = [];
  for (const [index, listen] of data.listen.entries()) {
    const { host, port: udpPort } = parseHostPort(listen)!;
    const socket = dgram.createSocket({
      type: host.includes(':') ? 'udp6' : 'udp4',
      recvBufferSize: data.receiveBufferBytes,
    });
    const counters = new Float64Array(data.stats, 8 * FIELDS * index, FIELDS);
    socket.on('message', (msg, rinfo) => {
      const source = sourceFor(rinfo.address);
      counters[0]! += 1;
      counters[1]! += msg.byteLength;
      if (!source.writer.write(msg, source.bytes, rinfo.port, Date.now())) {
        counters[2]! += 1;
        counters[3]! += msg.byteLength;
      }
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(udpPort, host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    socket.on('error', (error) =>
      port.postMessage({ type: 'error', message: `${listen}: ${errorMessage(error)}` }),
    );
    sockets.push(socket);
    const bound = socket.address();
    listeners.push({
      listen,
      address: bound.address,
      port: bound.port,
      receiveBufferBytes: socket.getRecvBufferSize(),
    });
  }
  // Under CPU contention a receive thread waiting for a time slice is what overflows the socket
  // buffer, while everything after it has its own queue; collector.receiveNice can put it first.
  const priority = data.receiveNice === 0 ? null : setThisThreadNice(data.receiveNice);
  port.postMessage({
    type: 'listening',
    listeners,
    priority,
    tid: currentThreadId(),
  } satisfies ReceiverMessage);
}

port.on('message', (message: { type: string }) => {
  if (message.type !== 'stop') return;
  let open = sockets.length;
  const done = () => {
    for (const w of writers) w.wake();
    port.postMessage({ type: 'stopped' } satisfies ReceiverMessage);
    port.close();
  };
  if (open === 0) done();
  for (const socket of sockets) {
    socket.close(() => {
      if (--open === 0) done();
    });
  }
});

bindAll().catch((error: unknown) => {
  for (const socket of sockets) socket.close();
  port.postMessage({ type: 'error', message: errorMessage(error) } satisfies ReceiverMessage);
});
