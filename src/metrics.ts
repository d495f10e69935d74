import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { CollectorSnapshot } from './collector/collector.js';
import { DECODE_ERRORS, DECODE_EVENTS } from './decoder/index.js';
import type { DestinationStatus } from './siem/index.js';
import type { FlowWriterStats } from './storage/flow-writer.js';

export interface MetricSources {
  snapshot(): Promise<CollectorSnapshot>;
  writer(): FlowWriterStats;
  spoolBytes(): number;
  collectorRestarts(): number;
  /** SIEM destinations (absent or empty: no SIEM metrics have values). */
  siem?(): readonly DestinationStatus[];
}

/**
 * Prometheus metrics, named flowsentry_<component>_<noun>_<unit> with _total on counters. Values
 * owned by the ingest threads are read from one snapshot per scrape; counters are set to the
 * snapshot's absolute value (reset + inc) because they are counted elsewhere.
 */
export function createMetrics(sources: MetricSources): { registry: Registry; insertSeconds: Histogram } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'flowsentry_process_' });
  let cached: { at: number; value: Promise<CollectorSnapshot> } | null = null;
  const snapshot = () => {
    const now = Date.now();
    if (!cached || now - cached.at > 500) cached = { at: now, value: sources.snapshot() };
    return cached.value;
  };
  const counter = (
    name: string,
    help: string,
    labelNames: string[],
    read: (s: CollectorSnapshot, c: Counter) => void,
  ) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const s = await snapshot();
        this.reset();
        read(s, this);
      },
    });
  const gauge = (
    name: string,
    help: string,
    labelNames: string[],
    read: (s: CollectorSnapshot, g: Gauge) => void,
  ) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const s = await snapshot();
        this.reset();
        read(s, this);
      },
    });

  const perListener =
    (field: 'packets' | 'bytes' | 'queue_dropped_packets') => (s: CollectorSnapshot, c: Counter) => {
      for (const l of s.listeners) c.inc({ listener: l.listen }, l[field]);
    };
  counter(
    'flowsentry_collector_packets_received_total',
    'Datagrams received per listener.',
    ['listener'],
    perListener('packets'),
  );
  counter(
    'flowsentry_collector_bytes_received_total',
    'Datagram bytes received per listener.',
    ['listener'],
    perListener('bytes'),
  );
  counter(
    'flowsentry_collector_queue_dropped_packets_total',
    'Datagrams dropped because the decoder queue was full.',
    ['listener'],
    perListener('queue_dropped_packets'),
  );
  counter(
    'flowsentry_collector_kernel_dropped_packets_total',
    'Datagrams the kernel dropped because the socket buffer was full (/proc/net/udp drops).',
    ['listener'],
    (s, c) => {
      for (const l of s.listeners) c.inc({ listener: l.listen }, l.kernel.drops);
    },
  );
  gauge(
    'flowsentry_collector_socket_queue_bytes',
    'Bytes waiting in the kernel socket buffer.',
    ['listener'],
    (s, g) => {
      for (const l of s.listeners) g.set({ listener: l.listen }, l.kernel.rxQueueBytes);
    },
  );
  gauge(
    'flowsentry_collector_receive_thread_nice',
    'Nice value of the receive thread: 0 unless collector.receiveNice raised it (and was allowed to).',
    [],
    (s, g) => g.set(s.receiveThread?.nice ?? 0),
  );
  gauge(
    'flowsentry_collector_queue_bytes',
    'Bytes waiting between the receive and decoder threads.',
    [],
    (s, g) => g.set(s.queueBytes),
  );
  counter('flowsentry_decoder_packets_total', 'Datagrams decoded.', [], (s, c) => c.inc(s.decoder.packets));
  counter('flowsentry_decoder_records_total', 'Flow records decoded.', [], (s, c) =>
    c.inc(s.decoder.records),
  );
  counter(
    'flowsentry_decoder_errors_total',
    'Malformed input, counted and dropped, by reason.',
    ['reason'],
    (s, c) => {
      for (const reason of DECODE_ERRORS) c.inc({ reason }, s.decoder[reason]);
    },
  );
  counter(
    'flowsentry_decoder_events_total',
    'Other decoder events (templates, pending data, limits).',
    ['event'],
    (s, c) => {
      for (const event of DECODE_EVENTS)
        if (event !== 'packets' && event !== 'records') c.inc({ event }, s.decoder[event]);
    },
  );
  counter(
    'flowsentry_decoder_sequence_lost_records_total',
    'Records lost between exporter and collector, estimated from export sequence numbers.',
    ['exporter', 'version', 'domain'],
    (s, c) => {
      for (const st of s.streams) {
        if (st.version === 0) continue;
        c.inc(
          { exporter: st.address, version: String(st.version), domain: String(st.domain) },
          st.sequence_lost_records,
        );
      }
    },
  );
  gauge('flowsentry_decoder_templates', 'Templates held.', [], (s, g) => g.set(s.state.templates));
  gauge('flowsentry_decoder_exporters', 'Exporters known.', [], (s, g) => g.set(s.state.exporters));
  gauge('flowsentry_decoder_pending_bytes', 'Data sets held until their template arrives.', [], (s, g) =>
    g.set(s.state.pendingBytes),
  );
  counter(
    'flowsentry_storage_spool_dropped_records_total',
    'Records dropped because the spool was full.',
    [],
    (s, c) => c.inc(s.spool.droppedRecords),
  );
  new Gauge({
    name: 'flowsentry_storage_spool_bytes',
    help: 'Bytes of decoded flows on disk waiting for the store.',
    registers: [registry],
    collect() {
      this.set(sources.spoolBytes());
    },
  });
  const fromSource = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  fromSource(
    'flowsentry_storage_inserted_rows_total',
    'Flow rows inserted into the store.',
    () => sources.writer().insertedRows,
  );
  fromSource(
    'flowsentry_storage_insert_failures_total',
    'Failed inserts (retried, or the spool file set aside when malformed).',
    () => sources.writer().insertFailures,
  );
  fromSource(
    'flowsentry_collector_restarts_total',
    'Times the collector process exited unexpectedly and was restarted.',
    sources.collectorRestarts,
  );
  const perDestination = (
    kind: 'counter' | 'gauge',
    name: string,
    help: string,
    read: (d: DestinationStatus) => number,
  ) => {
    const options = {
      name,
      help,
      labelNames: ['destination'],
      registers: [registry],
      collect(this: Counter | Gauge) {
        this.reset();
        for (const d of sources.siem?.() ?? []) {
          if (this instanceof Gauge) this.set({ destination: d.name }, read(d));
          else this.inc({ destination: d.name }, read(d));
        }
      },
    };
    return kind === 'counter' ? new Counter(options) : new Gauge(options);
  };
  perDestination(
    'counter',
    'flowsentry_siem_messages_sent_total',
    'Finding messages written to the destination (flushed for TCP/TLS), resends included.',
    (d) => d.sent,
  );
  perDestination(
    'counter',
    'flowsentry_siem_messages_resent_total',
    'Messages sent again after a connection error (at-least-once delivery).',
    (d) => d.resent,
  );
  perDestination(
    'counter',
    'flowsentry_siem_messages_failed_total',
    'Writes that failed; the message stays queued and is retried.',
    (d) => d.failed,
  );
  perDestination(
    'counter',
    'flowsentry_siem_messages_truncated_total',
    'Messages shortened (evidence first) to fit the destination maxMessageBytes.',
    (d) => d.truncated,
  );
  perDestination(
    'counter',
    'flowsentry_siem_messages_dropped_total',
    'Messages that could not be sent at all (not renderable, or refused for their size).',
    (d) => d.dropped,
  );
  perDestination(
    'counter',
    'flowsentry_siem_connection_failures_total',
    'Connections to the destination that could not be opened or broke.',
    (d) => d.connectionFailures,
  );
  perDestination(
    'gauge',
    'flowsentry_siem_messages_queued',
    'Finding versions waiting for the destination (in memory and not yet read).',
    (d) => d.queued,
  );
  perDestination(
    'gauge',
    'flowsentry_siem_oldest_unsent_age_seconds',
    'Age of the oldest finding version waiting for the destination (0: none).',
    (d) => d.oldestUnsentAgeSeconds,
  );
  perDestination(
    'gauge',
    'flowsentry_siem_connected',
    '1 while a connection (or socket) to the destination is open.',
    (d) => (d.connected ? 1 : 0),
  );
  const insertSeconds = new Histogram({
    name: 'flowsentry_storage_insert_seconds',
    help: 'Time per insert batch.',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  return { registry, insertSeconds };
}
