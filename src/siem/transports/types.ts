/** What a transport needs to reach its receiver; TLS material is already read from its files. */
export interface TransportOptions {
  readonly host: string;
  readonly port: number;
  readonly connectTimeoutMs: number;
  /** A write not taken by the kernel within this long breaks the connection. */
  readonly writeTimeoutMs: number;
  readonly tls?: {
    readonly ca?: Buffer;
    readonly cert?: Buffer;
    readonly key?: Buffer;
    /** The name the certificate must carry (default: host). */
    readonly serverName?: string;
    readonly verifyServerName: boolean;
  };
}

/**
 * One connection (or socket) to a syslog receiver. The forwarder writes one framed message at a time
 * and counts it as sent once write() resolves: handed to the kernel, for TCP and TLS after Node's
 * write buffer has been flushed into the socket.
 */
export interface Transport {
  /** true for TCP and TLS: a broken connection can lose what was written shortly before. */
  readonly stream: boolean;
  /** Connects; rejects when the receiver cannot be reached (or the TLS handshake fails). */
  open(): Promise<void>;
  write(data: Buffer): Promise<void>;
  /** Called once when an open connection breaks (error, or the receiver closed it). */
  onBroken: ((error: Error) => void) | null;
  /**
   * Closes gracefully (TLS: close_notify). Resolves true when the receiver closed its side in answer,
   * which it does only after reading everything sent before: what was written is delivered.
   */
  close(timeoutMs: number): Promise<boolean>;
  destroy(): void;
}

export type TransportFactory = (options: TransportOptions) => Transport;
