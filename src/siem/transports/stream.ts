import { isIP, type Socket, connect as tcpConnect } from 'node:net';
import { checkServerIdentity, connect as tlsConnect } from 'node:tls';
import type { Transport, TransportOptions } from './types.js';

/**
 * TCP (RFC 6587) and TLS (RFC 5425) to a syslog receiver. Receivers never answer on the connection;
 * anything they send is read and dropped so that it cannot fill the socket.
 */
class StreamTransport implements Transport {
  readonly stream = true;
  onBroken: ((error: Error) => void) | null = null;
  private socket: Socket | null = null;
  private closing = false;
  private broken = false;
  private peerEnded = false;

  constructor(
    private readonly options: TransportOptions,
    private readonly secure: boolean,
  ) {}

  open(): Promise<void> {
    const { host, port, connectTimeoutMs } = this.options;
    return new Promise<void>((resolve, reject) => {
      const socket = this.secure ? this.connectTls() : tcpConnect({ host, port });
      this.socket = socket;
      const timer = setTimeout(() => {
        fail(new Error(`connect to ${host}:${port} timed out after ${connectTimeoutMs} ms`));
      }, connectTimeoutMs);
      const fail = (error: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(error);
      };
      const closed = () => fail(new Error(`connection to ${host}:${port} closed before it was ready`));
      socket.once('error', fail);
      socket.once('close', closed);
      socket.once(this.secure ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        socket.off('close', closed);
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 30_000);
        socket.on('error', (error) => this.break(error));
        socket.on('end', () => {
          this.peerEnded = true;
          if (!this.closing) this.break(new Error('the receiver closed the connection'));
        });
        socket.on('close', () => {
          if (!this.closing) this.break(new Error('connection closed'));
        });
        socket.resume();
        resolve();
      });
    });
  }

  private connectTls(): Socket {
    const { host, port } = this.options;
    const t = this.options.tls ?? { verifyServerName: true };
    const name = t.serverName ?? host;
    return tlsConnect({
      host,
      port,
      // SNI takes DNS names only (RFC 6066 §3).
      ...(isIP(name) === 0 ? { servername: name } : {}),
      ...(t.ca ? { ca: t.ca } : {}),
      ...(t.cert ? { cert: t.cert } : {}),
      ...(t.key ? { key: t.key } : {}),
      // The chain is always verified; the name check is on unless verifyServerName is false.
      rejectUnauthorized: true,
      checkServerIdentity: (_host, cert) =>
        t.verifyServerName ? checkServerIdentity(name, cert) : undefined,
    });
  }

  private break(error: Error): void {
    if (this.broken) return;
    this.broken = true;
    this.socket?.destroy();
    this.onBroken?.(error);
  }

  write(data: Buffer): Promise<void> {
    const socket = this.socket;
    if (!socket || this.broken || socket.destroyed) {
      return Promise.reject(new Error('not connected'));
    }
    return new Promise<void>((resolve, reject) => {
      // A receiver that stops reading fills the socket buffers and the write never completes: after
      // writeTimeoutMs the connection counts as broken (and what it carried is sent again).
      const timer = setTimeout(() => {
        const error = new Error(
          `write stalled for ${this.options.writeTimeoutMs} ms (the receiver is not reading)`,
        );
        reject(error);
        this.break(error);
      }, this.options.writeTimeoutMs);
      socket.write(data, (error) => {
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      });
    });
  }

  close(timeoutMs: number): Promise<boolean> {
    const socket = this.socket;
    if (!socket || this.broken || socket.destroyed) return Promise.resolve(false);
    this.closing = true;
    return new Promise<boolean>((resolve) => {
      let failed = false;
      const timer = setTimeout(() => {
        socket.destroy();
        resolve(false);
      }, timeoutMs);
      socket.on('error', () => {
        failed = true;
      });
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(this.peerEnded && !failed);
      });
      socket.end();
    });
  }

  destroy(): void {
    this.closing = true;
    this.socket?.destroy();
  }
}

export function createTcpTransport(options: TransportOptions): Transport {
  return new StreamTransport(options, false);
}

export function createTlsTransport(options: TransportOptions): Transport {
  return new StreamTransport(options, true);
}
