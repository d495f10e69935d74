import { join } from 'node:path';
import { errorMessage } from '../common/errors.js';
import { createLogger } from '../common/logger.js';
import type { Config } from '../config/index.js';
import { Ingest } from './ingest.js';

/**
 * Entry point of the collector process, forked by the service (collector.ts). It owns the UDP
 * sockets, the receive thread, the decoder thread and its ring, and writes spool files; the service
 * process owns the store, the writer and the API. Messages (IPC):
 *   in:  start {config, backlogKiB} | released {kib} | snapshot {id, templates} | stop
 *   out: listening {listeners} | error {message} | spooled {file} | snapshot {id, snapshot} | stopped
 * It exits when the service goes away.
 */
export type CollectorRequest =
  | { type: 'start'; config: Config; backlogKiB: number }
  | { type: 'released'; kib: number }
  | { type: 'snapshot'; id: number; templates: boolean }
  | { type: 'stop' };

let ingest: Ingest | null = null;
let stopping: Promise<void> | null = null;
const spoolSizeKiB = new Int32Array(new SharedArrayBuffer(4));

function send(message: unknown): void {
  if (process.connected) process.send!(message);
}

function stop(): Promise<void> {
  stopping ??= (async () => {
    await ingest?.stop();
    send({ type: 'stopped' });
    if (process.connected) process.disconnect();
  })();
  return stopping;
}

process.on('message', (message: CollectorRequest) => {
  switch (message.type) {
    case 'start': {
      const config = message.config;
      const log = createLogger(config.logLevel).child({ component: 'collector' });
      Atomics.store(spoolSizeKiB, 0, message.backlogKiB);
      ingest = new Ingest(
        config,
        { dir: join(config.dataDir, 'spool'), sizeKiB: spoolSizeKiB },
        log,
        (file) => send({ type: 'spooled', file }),
      );
      ingest.start().then(
        () => send({ type: 'listening', listeners: ingest!.listeners }),
        (error: unknown) => {
          send({ type: 'error', message: errorMessage(error) });
          process.exitCode = 1;
          void stop();
        },
      );
      break;
    }
    case 'released':
      Atomics.sub(spoolSizeKiB, 0, message.kib);
      break;
    case 'snapshot':
      ingest?.snapshot(message.templates).then(
        (snapshot) => send({ type: 'snapshot', id: message.id, snapshot }),
        (error: unknown) => send({ type: 'snapshot', id: message.id, error: errorMessage(error) }),
      );
      break;
    case 'stop':
      void stop();
      break;
  }
});

// The service went away (crash or kill): stop cleanly so the decoders flush and save their state.
process.on('disconnect', () => {
  void stop();
});
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => {
  void stop();
});
