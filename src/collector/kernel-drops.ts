import { readFileSync } from 'node:fs';

export interface SocketQueueStats {
  /** Datagrams the kernel dropped because the socket's receive buffer was full. */
  drops: number;
  /** Bytes waiting in the receive queue now. */
  rxQueueBytes: number;
}

/**
 * Reads the kernel's per-socket counters for UDP sockets bound to `port` from /proc/net/udp and
 * /proc/net/udp6 (the `drops` column, proc(5); Node's dgram cannot read SO_RXQ_OVFL, socket(7)). Returns
 * zeros where /proc is absent.
 */
export function readKernelUdpStats(port: number): SocketQueueStats {
  const out: SocketQueueStats = { drops: 0, rxQueueBytes: 0 };
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const file of ['/proc/net/udp', '/proc/net/udp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 13 || !cols[1]!.endsWith(hexPort)) continue;
      out.rxQueueBytes += Number.parseInt(cols[4]!.split(':')[1] ?? '0', 16);
      out.drops += Number(cols[cols.length - 1]);
    }
  }
  return out;
}
