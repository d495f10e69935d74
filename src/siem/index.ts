import type { Component } from '../common/component.js';
import type { Logger } from '../common/logger.js';
import type { Config } from '../config/index.js';
import type { Store } from '../storage/clickhouse.js';
import { type Destination, resolveDestinations } from './destinations.js';
import { DestinationForwarder, type DestinationStatus, type ForwarderSettings } from './forwarder.js';
import { FindingOutbox } from './outbox.js';
import type { TransportFactory } from './transports/index.js';

export { type SiemConfig, siemSchema } from './config.js';
export { type Destination, findingFilter, resolveDestinations } from './destinations.js';
export { FORMATS, type FormatName } from './formats/index.js';
export type { DestinationStatus, ForwarderSettings } from './forwarder.js';
export { FindingOutbox } from './outbox.js';

/** SIEM forwarding: findings (never flows) to every configured syslog destination. */
export interface SiemForwarder extends Component {
  readonly destinations: readonly Destination[];
  status(): DestinationStatus[];
}

export interface SiemDeps {
  readonly store: Store;
  readonly log: Logger;
  /** Product version for CEF/LEEF headers and ECS observer.version. */
  readonly version: string;
  /** The detectors that exist (a filter naming another stops start-up) and their titles. */
  readonly detectors?: ReadonlyMap<string, { readonly title: string }>;
  /** Tests: other transports by scheme. */
  readonly transports?: Record<Destination['transport'], TransportFactory>;
}

/** The forwarder's shared settings from the configuration. */
export function forwarderSettings(siem: Readonly<Config['siem']>): ForwarderSettings {
  return {
    pollIntervalMs: siem.pollIntervalMs,
    overlapMs: siem.overlapSeconds * 1000,
    resendMs: siem.resendSeconds * 1000,
    backlogMs: siem.backlogHours * 3_600_000,
    maxQueued: siem.maxQueued,
    retryMinMs: siem.retry.minMs,
    retryMaxMs: siem.retry.maxMs,
    readBatch: 500,
    saveIntervalMs: Math.max(1_000, siem.pollIntervalMs),
  };
}

/**
 * Builds the forwarder of every configured destination (throws CONFIG_INVALID naming the field).
 * Started after the detector scheduler and before the API; stopped before the store.
 */
export function createSiemForwarder(config: Readonly<Config>, deps: SiemDeps): SiemForwarder {
  const log = deps.log.child({ component: 'siem' });
  const destinations = resolveDestinations(config, {
    version: deps.version,
    ...(deps.detectors ? { detectors: new Set(deps.detectors.keys()) } : {}),
  });
  const outbox = new FindingOutbox(deps.store);
  const view = {
    linkBase: `${config.api.publicUrl}/api/v1/findings/`,
    detectorTitle: (id: string) => deps.detectors?.get(id)?.title,
  };
  const settings = forwarderSettings(config.siem);
  const forwarders = destinations.map(
    (d) => new DestinationForwarder(d, outbox, view, settings, log, deps.transports),
  );
  const started: DestinationForwarder[] = [];
  return {
    name: 'siem',
    destinations,
    async start() {
      try {
        for (const f of forwarders) {
          await f.start();
          started.push(f);
        }
      } catch (error) {
        await Promise.all(started.splice(0).map((f) => f.stop()));
        throw error;
      }
      if (forwarders.length > 0) {
        log.info({ destinations: destinations.map((d) => d.name) }, 'siem forwarding started');
      }
    },
    async stop() {
      await Promise.all(started.splice(0).map((f) => f.stop()));
    },
    status: () => forwarders.map((f) => f.status()),
  };
}
