import { createTcpTransport, createTlsTransport } from './stream.js';
import type { TransportFactory } from './types.js';
import { createUdpTransport } from './udp.js';

export type { Transport, TransportFactory, TransportOptions } from './types.js';

/** Transports by URL scheme. */
export const TRANSPORTS = {
  udp: createUdpTransport,
  tcp: createTcpTransport,
  tls: createTlsTransport,
} satisfies Record<'udp' | 'tcp' | 'tls', TransportFactory>;
