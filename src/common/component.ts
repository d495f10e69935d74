import { errorMessage } from './errors.js';
import type { Logger } from './logger.js';

/**
 * A part of the service with a start and a stop: the collector, the flow writer, the detector
 * scheduler, the API. main.ts starts them in dependency order and stops them in reverse.
 */
export interface Component {
  readonly name: string;
  start(): Promise<void>;
  /** Stops the component; must be safe to call when start() failed or never ran. */
  stop(): Promise<void>;
}

/**
 * Starts components in order. When one fails to start, the ones already started are stopped in
 * reverse order and the error is rethrown; stop() stops every started component in reverse, logging
 * (not throwing) the failures of one so that the others still stop.
 */
export class Lifecycle {
  private readonly started: Component[] = [];
  private stopping: Promise<void> | null = null;

  constructor(private readonly log: Logger) {}

  async start(component: Component): Promise<void> {
    try {
      await component.start();
    } catch (error) {
      await this.stop();
      throw error;
    }
    this.started.push(component);
  }

  /** Starts a component made of a value to open and a way to close it; returns the value. */
  async open<T>(name: string, open: () => Promise<T>, close: (value: T) => Promise<void>): Promise<T> {
    let value: { v: T } | null = null;
    await this.start({
      name,
      start: async () => {
        value = { v: await open() };
      },
      stop: async () => {
        if (value) await close(value.v);
      },
    });
    return (value as unknown as { v: T }).v;
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const component of this.started.splice(0).reverse()) {
        try {
          await component.stop();
        } catch (error) {
          this.log.error({ component: component.name, err: errorMessage(error) }, 'error while stopping');
        }
      }
    })();
    return this.stopping;
  }
}
