import { type ChildProcess, fork } from 'node:child_process';
import { FlowsentryError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Config } from '../config/index.js';
import type { SpoolFile } from '../storage/spool.js';
import type { CollectorRequest } from './collector-process.js';
import type { CollectorSnapshot, ListenerStatus } from './ingest.js';

export type { CollectorSnapshot, ListenerStatus } from './ingest.js';

type CollectorEvent =
  | { type: 'listening'; listeners: ListenerStatus[] }
  | { type: 'error'; message: string }
  | { type: 'spooled'; file: SpoolFile }
  | { type: 'snapshot'; id: number; snapshot?: CollectorSnapshot; error?: string }
  | { type: 'stopped' };

/**
 * The service's handle on the collector process (collector-process.ts): starts it, forwards spool
 * notices to the writer and releases back, answers snapshots, and restarts it if it dies. Keeping
 * the sockets in their own process isolates them from the store's CPU and memory (the service
 * process lowers its own priority once the collector is running; see main.ts).
 */
export class Collector {
  private child: ChildProcess | null = null;
  private listenerStatus: ListenerStatus[] = [];
  private readonly pending = new Map<
    number,
    { resolve: (s: CollectorSnapshot) => void; reject: (e: Error) => void }
  >();
  private nextRequest = 1;
  private stopping = false;
  restarts = 0;

  constructor(
    private readonly config: Readonly<Config>,
    private readonly log: Logger,
    private readonly onSpooled: (file: SpoolFile) => void,
    /** Spool KiB already waiting (left by an earlier run), counted against the spool limit. */
    private readonly backlogKiB: () => number,
  ) {}

  get listeners(): readonly ListenerStatus[] {
    return this.listenerStatus;
  }

  async start(): Promise<void> {
    const child = fork(new URL('./collector-process.js', import.meta.url), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    this.child = child;
    const ready = new Promise<void>((resolve, reject) => {
      child.on('message', (message: CollectorEvent) => {
        switch (message.type) {
          case 'listening':
            this.listenerStatus = message.listeners;
            resolve();
            break;
          case 'error':
            reject(new FlowsentryError('LISTEN_FAILED', message.message));
            break;
          case 'spooled':
            this.onSpooled(message.file);
            break;
          case 'snapshot': {
            const request = this.pending.get(message.id);
            this.pending.delete(message.id);
            if (message.snapshot) request?.resolve(message.snapshot);
            else request?.reject(new Error(message.error ?? 'collector snapshot failed'));
            break;
          }
          case 'stopped':
            break;
        }
      });
      child.once('exit', (code, signal) => {
        reject(
          new FlowsentryError(
            'LISTEN_FAILED',
            `collector process exited (${signal ?? code}) during start-up`,
          ),
        );
        this.exited(child, code, signal);
      });
    });
    this.send({ type: 'start', config: this.config as Config, backlogKiB: this.backlogKiB() });
    await ready;
  }

  /** The store took spool files: the collector may write that much again. */
  released(kib: number): void {
    this.send({ type: 'released', kib });
  }

  snapshot(withTemplates = false): Promise<CollectorSnapshot> {
    const id = this.nextRequest++;
    return new Promise<CollectorSnapshot>((resolve, reject) => {
      if (!this.child?.connected) {
        reject(new Error('the collector process is not running'));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error('the collector process did not answer'));
      }, 10_000);
      this.pending.set(id, {
        resolve: (s) => {
          clearTimeout(timer);
          resolve(s);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.send({ type: 'snapshot', id, templates: withTemplates });
    });
  }

  /** Asks the collector to close its sockets, drain its queues, flush and save its state. */
  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    this.send({ type: 'stop' });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  }

  private send(message: CollectorRequest): void {
    if (this.child?.connected) this.child.send(message);
  }

  private exited(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    for (const request of this.pending.values()) request.reject(new Error('the collector process exited'));
    this.pending.clear();
    if (this.stopping || child !== this.child || this.listenerStatus.length === 0) return;
    // Unexpected: restart it (templates were saved; the spool keeps what was decoded).
    this.restarts++;
    this.listenerStatus = [];
    const delay = Math.min(30_000, 1000 * 2 ** Math.min(this.restarts - 1, 5));
    this.log.error({ code, signal, restartInMs: delay }, 'collector process exited; restarting');
    setTimeout(() => {
      if (this.stopping) return;
      this.start().catch((error: unknown) =>
        this.log.error({ err: String(error) }, 'collector restart failed'),
      );
    }, delay).unref();
  }
}
