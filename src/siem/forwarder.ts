import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Finding } from '../findings/model.js';
import { DeliveryQueue, type QueuedFinding } from './delivery-queue.js';
import type { Destination } from './destinations.js';
import { type ViewContext, viewOf } from './formats/index.js';
import { frame, renderMessage } from './message.js';
import type { FindingOutbox } from './outbox.js';
import { TRANSPORTS, type Transport, type TransportFactory } from './transports/index.js';

/** Settings shared by every destination (siem.* in the configuration). */
export interface ForwarderSettings {
  readonly pollIntervalMs: number;
  readonly overlapMs: number;
  readonly resendMs: number;
  readonly backlogMs: number;
  readonly maxQueued: number;
  readonly retryMinMs: number;
  readonly retryMaxMs: number;
  /** Rows read per query. */
  readonly readBatch: number;
  /** How often the position is written to siem_outbox while it moves. */
  readonly saveIntervalMs: number;
}

/** What GET /api/v1/siem and the metrics report per destination. */
export interface DestinationStatus {
  readonly name: string;
  readonly url: string;
  readonly transport: Destination['transport'];
  readonly format: Destination['format'];
  readonly framing: Destination['framing'];
  readonly header: Destination['header'];
  readonly connected: boolean;
  /** Messages written (and, for TCP/TLS, flushed), resends included. */
  readonly sent: number;
  /** Of those, sent again after a connection error. */
  readonly resent: number;
  /** Writes that failed (the message stays queued and is retried). */
  readonly failed: number;
  /** Connections that could not be opened or broke. */
  readonly connectionFailures: number;
  /** Messages shortened to fit maxMessageBytes. */
  readonly truncated: number;
  /** Messages that could not be sent at all (not renderable, or refused for their size). */
  readonly dropped: number;
  /** Finding versions skipped: forward=false (a backfill asked so) or outside the filter. */
  readonly skipped: number;
  /** Versions waiting: in memory, plus rows not read yet when the queue is full. */
  readonly queued: number;
  /** Age of the oldest waiting version (its updated_at), 0 when nothing waits. */
  readonly oldestUnsentAgeSeconds: number;
  readonly position: number;
  readonly lastError: string | null;
  readonly lastSentAt: string | null;
}

interface SentRecord {
  readonly finding: Finding;
  readonly at: number;
}

const key = (id: string, version: number) => `${id}\n${version}`;

/**
 * Delivers findings to one destination, at least once, in version order.
 *
 * Reading: every poll reads the versions above the cursor (the highest version read), and also looks
 * back `overlapMs` below it for rows that landed late (a writer's clock behind, a write in flight),
 * skipping the (id, version) pairs already handled. Each version is skipped (forward = false, or
 * outside the filter) or queued (DeliveryQueue: one per finding, latest state wins, updates
 * throttled).
 *
 * Sending: one message at a time; a message counts as sent when the transport's write resolves. After
 * a TCP/TLS connection error, what was sent in the last `resendMs` is queued again (plain TCP has no
 * acknowledgement: the kernel may have held it when the connection died). Connections are retried
 * with exponential backoff.
 *
 * The position saved in siem_outbox never passes a version that is waiting, nor one sent within the
 * resend window (unless the connection then closed cleanly), so a restart at any moment re-reads all
 * that might not have reached the receiver. Sent pairs near the position are saved with it, so such a
 * restart rarely sends anything twice.
 */
export class DestinationForwarder {
  private readonly queue: DeliveryQueue;
  private cursor = 0;
  private lateFloor = 0;
  /** Versions read within the overlap window (any outcome), by key → version. */
  private readonly seen = new Map<string, number>();
  /** Sent versions near the position, by key → version (saved with it). */
  private readonly sentRecent = new Map<string, number>();
  private resendWindow: SentRecord[] = [];
  private transport: Transport | null = null;
  private connecting: Transport | null = null;
  private connectedFlag = false;
  private stopped = true;
  private attempt = 0;
  private backlog = { rows: 0, oldestUpdate: Number.POSITIVE_INFINITY };
  private wakeSender: (() => void) | null = null;
  private wakePoller: (() => void) | null = null;
  private loops: Promise<void>[] = [];
  private savedPosition = -1;
  private savedSentSize = -1;
  private readonly counters = {
    sent: 0,
    resent: 0,
    failed: 0,
    connectionFailures: 0,
    truncated: 0,
    dropped: 0,
    skipped: 0,
  };
  private lastError: string | null = null;
  private lastSentAt: number | null = null;
  private lastOversizeWarning = 0;

  constructor(
    readonly destination: Destination,
    private readonly outbox: FindingOutbox,
    private readonly view: ViewContext,
    private readonly settings: ForwarderSettings,
    private readonly log: Logger,
    private readonly transports: Record<Destination['transport'], TransportFactory> = TRANSPORTS,
  ) {
    this.queue = new DeliveryQueue(destination.updateIntervalMs);
  }

  async start(): Promise<void> {
    const state = await this.outbox.load(this.destination.name);
    if (state) {
      this.cursor = state.position;
      this.lateFloor = state.position - this.settings.overlapMs;
      for (const [id, version] of state.sent) {
        this.seen.set(key(id, version), version);
        this.sentRecent.set(key(id, version), version);
        this.queue.remember(id, version, state.savedAt);
      }
    } else {
      // A destination seen for the first time starts with the recent backlog; saved at once, so a
      // restart does not move that start.
      this.cursor = Math.max(0, Date.now() - this.settings.backlogMs);
      this.lateFloor = this.cursor;
      await this.save(true);
    }
    this.stopped = false;
    this.log.info(
      {
        destination: this.destination.name,
        url: this.destination.url,
        format: this.destination.format,
        position: this.cursor,
        resumed: state !== null,
      },
      'siem destination started',
    );
    this.loops = [this.pollLoop(), this.sendLoop()];
  }

  /**
   * Stops reading and sending (the write under way finishes), closes the connection gracefully and
   * saves the position. Nothing waiting is lost: it is read again at the next start.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.wakeSender?.();
    this.wakePoller?.();
    this.connecting?.destroy();
    // The write under way gets a few seconds; a receiver that does not take it is cut off.
    const finished = Promise.all(this.loops);
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([
      finished.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), 3_000);
      }),
    ]);
    clearTimeout(timer);
    if (late) {
      this.transport?.destroy();
      await finished;
    }
    const transport = this.transport;
    this.transport = null;
    this.connectedFlag = false;
    if (transport) {
      // The receiver closes its side only after reading all we sent: then nothing is in flight.
      if (await transport.close(2_000)) this.resendWindow = [];
      transport.destroy();
    }
    try {
      await this.save(true);
    } catch (error) {
      this.log.warn(
        { destination: this.destination.name, err: errorMessage(error) },
        'siem position not saved; the next start sends the last findings again',
      );
    }
  }

  status(): DestinationStatus {
    const d = this.destination;
    const oldest = Math.min(this.queue.oldestUpdate(), this.backlog.oldestUpdate);
    return {
      name: d.name,
      url: d.url,
      transport: d.transport,
      format: d.format,
      framing: d.framing,
      header: d.header,
      connected: this.connectedFlag,
      ...this.counters,
      queued: this.queue.size + this.backlog.rows,
      oldestUnsentAgeSeconds: Number.isFinite(oldest) ? Math.max(0, (Date.now() - oldest) / 1000) : 0,
      position: this.position(),
      lastError: this.lastError,
      lastSentAt: this.lastSentAt === null ? null : new Date(this.lastSentAt).toISOString(),
    };
  }

  /** Every version at or below this is handled for good (see the class comment). */
  position(): number {
    let position = Math.min(this.cursor, this.queue.minVersion() - 1);
    for (const r of this.resendWindow) position = Math.min(position, r.finding.version - 1);
    return position;
  }

  // --- reading -------------------------------------------------------------------------------

  private async pollLoop(): Promise<void> {
    let lastSave = 0;
    while (!this.stopped) {
      let more = false;
      try {
        more = await this.poll();
      } catch (error) {
        this.lastError = `reading findings: ${errorMessage(error)}`;
        this.log.warn({ destination: this.destination.name, err: errorMessage(error) }, 'siem read failed');
      }
      const now = Date.now();
      this.trimResendWindow(now);
      this.queue.prune(now, this.settings.overlapMs + 60_000);
      if (now - lastSave >= this.settings.saveIntervalMs) {
        lastSave = now;
        try {
          await this.save(false);
        } catch (error) {
          this.log.warn(
            { destination: this.destination.name, err: errorMessage(error) },
            'siem position not saved',
          );
        }
      }
      if (!more) await this.sleep(this.settings.pollIntervalMs, 'poller');
    }
  }

  /** One read; true when there is more to read right away. */
  private async poll(): Promise<boolean> {
    if (this.queue.size >= this.settings.maxQueued) {
      // Full: the rest waits in the table (the cursor stays), counted for the metrics.
      this.backlog = await this.outbox.backlog(this.cursor);
      return false;
    }
    const rows = await this.outbox.after(this.cursor, this.settings.readBatch);
    const lateFrom = Math.max(this.lateFloor, this.cursor - this.settings.overlapMs);
    const lateTo = this.cursor;
    for (const f of rows) this.consider(f);
    if (rows.length > 0) this.cursor = Math.max(this.cursor, rows[rows.length - 1]!.version);
    // Rows that landed below the cursor after it passed them (and rows cut off by the LIMIT at the
    // cursor's own version).
    const unknown = (await this.outbox.versions(lateFrom, lateTo)).filter(
      (p) => !this.seen.has(key(p.id, p.version)),
    );
    if (unknown.length > 0) {
      const late = await this.outbox.rows(unknown);
      for (const f of late) this.consider(f);
      this.log.debug({ destination: this.destination.name, rows: late.length }, 'siem late rows');
    }
    this.forgetBelow(this.cursor - this.settings.overlapMs);
    const full = rows.length >= this.settings.readBatch;
    this.backlog = full ? await this.outbox.backlog(this.cursor) : { rows: 0, oldestUpdate: Infinity };
    if (rows.length > 0 || unknown.length > 0) this.wakeSender?.();
    return full && this.queue.size < this.settings.maxQueued;
  }

  private consider(f: Finding): void {
    const k = key(f.id, f.version);
    if (this.seen.has(k)) return;
    this.seen.set(k, f.version);
    if (!f.forward || !this.destination.accepts(f)) {
      this.counters.skipped++;
      return;
    }
    this.queue.offer(f);
  }

  private forgetBelow(version: number): void {
    for (const [k, v] of this.seen) if (v < version) this.seen.delete(k);
    const floor = Math.min(version, this.position() - this.settings.overlapMs);
    for (const [k, v] of this.sentRecent) if (v < floor) this.sentRecent.delete(k);
  }

  // --- sending -------------------------------------------------------------------------------

  private async sendLoop(): Promise<void> {
    while (!this.stopped) {
      if (!this.transport) {
        if (this.queue.size === 0) {
          // Connect when there is something to send (a receiver may close idle connections).
          await this.sleep(this.settings.pollIntervalMs, 'sender');
          continue;
        }
        if (!(await this.connect())) {
          await this.backoff();
          continue;
        }
      }
      const now = Date.now();
      const item = this.queue.next(now);
      if (!item) {
        const due = this.queue.nextDueAt();
        await this.sleep(Math.min(this.settings.pollIntervalMs, Math.max(10, due - now)), 'sender');
        continue;
      }
      await this.sendOne(item);
    }
  }

  private async connect(): Promise<boolean> {
    const d = this.destination;
    const transport = this.transports[d.transport](d.transportOptions);
    this.connecting = transport;
    try {
      await transport.open();
    } catch (error) {
      if (this.stopped) return false;
      transport.destroy();
      this.counters.connectionFailures++;
      this.lastError = `connect: ${errorMessage(error)}`;
      if (this.attempt === 0) {
        this.log.warn(
          { destination: d.name, url: d.url, err: errorMessage(error) },
          'siem receiver unreachable',
        );
      }
      return false;
    } finally {
      this.connecting = null;
    }
    if (this.stopped) {
      transport.destroy();
      return false;
    }
    transport.onBroken = (error) => this.connectionLost(transport, error);
    this.transport = transport;
    this.connectedFlag = true;
    if (this.attempt > 0) this.log.info({ destination: d.name, url: d.url }, 'siem receiver reachable again');
    else this.log.debug({ destination: d.name, url: d.url }, 'siem connected');
    this.attempt = 0;
    return true;
  }

  private async sendOne(item: QueuedFinding): Promise<void> {
    const transport = this.transport!;
    let data: Buffer;
    try {
      const rendered = renderMessage(viewOf(item.finding, this.view), this.destination.render);
      if (rendered.truncated) this.counters.truncated++;
      if (rendered.oversize && Date.now() - this.lastOversizeWarning > 60_000) {
        this.lastOversizeWarning = Date.now();
        this.log.warn(
          { destination: this.destination.name, finding: item.finding.id },
          'siem message above maxMessageBytes even without its optional fields; sent as it is',
        );
      }
      data = frame(rendered.message, this.destination.framing);
    } catch (error) {
      // A finding the formats cannot render must not stop the others.
      this.drop(item, `render: ${errorMessage(error)}`);
      return;
    }
    try {
      await transport.write(data);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EMSGSIZE') {
        this.drop(item, `the transport refused a ${data.length}-byte message (EMSGSIZE)`);
        return;
      }
      this.counters.failed++;
      this.connectionLost(transport, error as Error);
      await this.backoff();
      return;
    }
    const now = Date.now();
    this.queue.sent(item, now);
    this.counters.sent++;
    if (item.resend) this.counters.resent++;
    this.lastSentAt = now;
    this.sentRecent.set(key(item.finding.id, item.finding.version), item.finding.version);
    if (transport.stream && this.settings.resendMs > 0) {
      this.resendWindow.push({ finding: item.finding, at: now });
    }
  }

  private drop(item: QueuedFinding, reason: string): void {
    this.queue.drop(item);
    this.counters.dropped++;
    this.lastError = reason;
    this.log.error(
      { destination: this.destination.name, finding: item.finding.id, version: item.finding.version, reason },
      'siem message dropped',
    );
  }

  /** The connection is gone: what it carried in the last resendMs is queued again. */
  private connectionLost(transport: Transport, error: Error): void {
    if (this.transport !== transport) return;
    this.transport = null;
    this.connectedFlag = false;
    transport.destroy();
    this.counters.connectionFailures++;
    this.lastError = `connection: ${errorMessage(error)}`;
    const since = Date.now() - this.settings.resendMs;
    const again = this.resendWindow.filter((r) => r.at >= since);
    this.resendWindow = [];
    for (const r of again) this.queue.offer(r.finding, true);
    this.log.warn(
      { destination: this.destination.name, err: errorMessage(error), resending: again.length },
      'siem connection lost',
    );
    this.wakeSender?.();
  }

  private trimResendWindow(now: number): void {
    const since = now - this.settings.resendMs;
    if (this.resendWindow.length > 0 && this.resendWindow[0]!.at < since) {
      this.resendWindow = this.resendWindow.filter((r) => r.at >= since);
    }
  }

  private async backoff(): Promise<void> {
    const base = Math.min(
      this.settings.retryMaxMs,
      this.settings.retryMinMs * 2 ** Math.min(this.attempt, 30),
    );
    this.attempt++;
    // Full jitter on the upper half, so many senders do not reconnect in step.
    await this.sleep(base / 2 + (Math.random() * base) / 2, 'sender');
  }

  private sleep(ms: number, who: 'sender' | 'poller'): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (who === 'sender') this.wakeSender = null;
        else this.wakePoller = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      if (who === 'sender') this.wakeSender = done;
      else this.wakePoller = done;
    });
  }

  // --- state ---------------------------------------------------------------------------------

  private async save(force: boolean): Promise<void> {
    const position = this.position();
    if (!force && position === this.savedPosition && this.sentRecent.size === this.savedSentSize) return;
    const unconfirmed = new Set(this.resendWindow.map((r) => key(r.finding.id, r.finding.version)));
    const floor = position - this.settings.overlapMs;
    const sent = [...this.sentRecent]
      .filter(([k, v]) => v >= floor && !unconfirmed.has(k))
      .sort((a, b) => b[1] - a[1])
      .slice(0, 10_000)
      .map(([k, v]) => [k.slice(0, k.indexOf('\n')), v] as const);
    await this.outbox.save(this.destination.name, { position, sent });
    this.savedPosition = position;
    this.savedSentSize = this.sentRecent.size;
  }
}
