import type { Registry } from 'prom-client';
import { observedCounter, observedGauge } from '../common/metrics.js';
import type { DestinationStatus } from './forwarder.js';

/**
 * The SIEM forwarder's metrics, per destination, read from each destination's status at every
 * scrape: delivery counters, the backlog (versions queued, age of the oldest unsent) and the
 * connection state.
 */
export function registerSiemMetrics(registry: Registry, status: () => readonly DestinationStatus[]): void {
  const perDestination = (read: (d: DestinationStatus) => number) => () =>
    status().map((d) => [{ destination: d.name }, read(d)] as const);
  const counter = (name: string, help: string, read: (d: DestinationStatus) => number) =>
    observedCounter(registry, name, help, ['destination'], perDestination(read));
  const gauge = (name: string, help: string, read: (d: DestinationStatus) => number) =>
    observedGauge(registry, name, help, ['destination'], perDestination(read));
  counter(
    'flowsentry_siem_messages_sent_total',
    'Finding messages written to the destination (flushed for TCP/TLS), resends included.',
    (d) => d.sent,
  );
  counter(
    'flowsentry_siem_messages_resent_total',
    'Messages sent again after a connection error (at-least-once delivery).',
    (d) => d.resent,
  );
  counter(
    'flowsentry_siem_messages_failed_total',
    'Writes that failed; the message stays queued and is retried.',
    (d) => d.failed,
  );
  counter(
    'flowsentry_siem_messages_truncated_total',
    'Messages shortened (evidence first) to fit the destination maxMessageBytes.',
    (d) => d.truncated,
  );
  counter(
    'flowsentry_siem_messages_dropped_total',
    'Messages that could not be sent at all (not renderable, or refused for their size).',
    (d) => d.dropped,
  );
  counter(
    'flowsentry_siem_messages_skipped_total',
    'Finding versions not forwarded: outside the destination filter, or from a run with forwarding off.',
    (d) => d.skipped,
  );
  counter(
    'flowsentry_siem_connection_failures_total',
    'Connections to the destination that could not be opened or broke.',
    (d) => d.connectionFailures,
  );
  gauge(
    'flowsentry_siem_messages_queued',
    'Finding versions waiting for the destination (in memory and not yet read).',
    (d) => d.queued,
  );
  gauge(
    'flowsentry_siem_oldest_unsent_age_seconds',
    'Age of the oldest finding version waiting for the destination (0: none).',
    (d) => d.oldestUnsentAgeSeconds,
  );
  gauge('flowsentry_siem_connected', '1 while a connection (or socket) to the destination is open.', (d) =>
    d.connected ? 1 : 0,
  );
}
