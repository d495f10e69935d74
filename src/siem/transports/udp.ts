import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Transport, TransportOptions } from './types.js';

/**
 * UDP (RFC 5426): one message per datagram. Delivery is not confirmed and loss is silent; the socket
 * is connected so that an ICMP port-unreachable from the receiver's host fails a later send
 * (ECONNREFUSED) instead of being ignored.
 */
class UdpTransport implements Transport {
  readonly stream = false;
  onBroken: ((error: Error) => void) | null = null;
  private socket: Socket | null = null;

  constructor(private readonly options: TransportOptions) {}

  async open(): Promise<void> {
    const { host, port } = this.options;
    const family = isIP(host) || (await lookup(host)).family;
    const socket = createSocket(family === 6 ? 'udp6' : 'udp4');
    this.socket = socket;
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(port, host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    socket.on('error', (error) => this.onBroken?.(error));
  }

  write(data: Buffer): Promise<void> {
    const socket = this.socket;
    if (!socket) return Promise.reject(new Error('not open'));
    return new Promise<void>((resolve, reject) => {
      socket.send(data, (error) => (error ? reject(error) : resolve()));
    });
  }

  async close(): Promise<boolean> {
    const socket = this.socket;
    this.socket = null;
    if (socket) await new Promise<void>((r) => socket.close(() => r()));
    return false;
  }

  destroy(): void {
    try {
      this.socket?.close();
    } catch {
      // Already closed.
    }
    this.socket = null;
  }
}

export function createUdpTransport(options: TransportOptions): Transport {
  return new UdpTransport(options);
}
