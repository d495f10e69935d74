import type { Registry } from 'prom-client';
import { observedCounter, observedGauge, single } from '../common/metrics.js';
import { DECODE_ERRORS, DECODE_EVENTS, type StreamSnapshot } from '../decoder/index.js';
import type { CollectorSnapshot } from './ingest.js';

export interface CollectorMetricSources {
  /** One snapshot of the collector process (its threads count; the service only reads). */
  snapshot(): Promise<CollectorSnapshot>;
  /** Times the collector process exited unexpectedly and was restarted. */
  restarts(): number;
}

type Sample = readonly [Record<string, string>, number];

/**
 * The collector's metrics: receive sockets, the queue to the decoders, the decoders (totals by
 * reason and per exporter) and the spool the decoders write. The values are counted in the
 * collector process; one snapshot per scrape (cached 500 ms, shared by every metric here) reads them.
 * While the process is down (restarting) the snapshot metrics have no samples and
 * flowsentry_collector_up is 0.
 */
export function registerCollectorMetrics(registry: Registry, sources: CollectorMetricSources): void {
  let cached: { at: number; value: Promise<CollectorSnapshot | null> } | null = null;
  const snapshot = (): Promise<CollectorSnapshot | null> => {
    const now = Date.now();
    if (!cached || now - cached.at > 500) {
      cached = { at: now, value: sources.snapshot().catch(() => null) };
    }
    return cached.value;
  };
  const fromSnapshot =
    (read: (s: CollectorSnapshot) => Iterable<Sample>) => async (): Promise<Iterable<Sample>> => {
      const s = await snapshot();
      return s ? read(s) : [];
    };
  const counter = (
    name: string,
    help: string,
    labels: string[],
    read: (s: CollectorSnapshot) => Iterable<Sample>,
  ) => observedCounter(registry, name, help, labels, fromSnapshot(read));
  const gauge = (
    name: string,
    help: string,
    labels: string[],
    read: (s: CollectorSnapshot) => Iterable<Sample>,
  ) => observedGauge(registry, name, help, labels, fromSnapshot(read));

  observedGauge(registry, 'flowsentry_collector_up', '1 while the collector process answers.', [], async () =>
    single((await snapshot()) ? 1 : 0),
  );
  observedCounter(
    registry,
    'flowsentry_collector_restarts_total',
    'Times the collector process exited unexpectedly and was restarted.',
    [],
    () => single(sources.restarts()),
  );

  // Sockets (per listener address).
  const perListener = (field: 'packets' | 'bytes' | 'queue_dropped_packets') => (s: CollectorSnapshot) =>
    s.listeners.map((l): Sample => [{ listener: l.listen }, l[field]]);
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
    (s) => s.listeners.map((l): Sample => [{ listener: l.listen }, l.kernel.drops]),
  );
  gauge(
    'flowsentry_collector_socket_queue_bytes',
    'Bytes waiting in the kernel socket buffer.',
    ['listener'],
    (s) => s.listeners.map((l): Sample => [{ listener: l.listen }, l.kernel.rxQueueBytes]),
  );
  gauge(
    'flowsentry_collector_receive_thread_nice',
    'Nice value of the receive thread: 0 unless collector.receiveNice raised it (and was allowed to).',
    [],
    (s) => single(s.receiveThread?.nice ?? 0),
  );

  // The queue between the receive thread and the decoders.
  gauge(
    'flowsentry_collector_queue_bytes',
    'Bytes waiting between the receive and decoder threads.',
    [],
    (s) => single(s.queueBytes),
  );
  gauge(
    'flowsentry_collector_queue_capacity_bytes',
    'Size of the queue between the receive and decoder threads (collector.queueBytes).',
    [],
    (s) => single(s.queueCapacityBytes),
  );

  // Decoders, totals.
  counter('flowsentry_decoder_packets_total', 'Datagrams decoded.', [], (s) => single(s.decoder.packets));
  counter('flowsentry_decoder_records_total', 'Flow records decoded.', [], (s) => single(s.decoder.records));
  counter(
    'flowsentry_decoder_errors_total',
    'Malformed input, counted and dropped, by reason.',
    ['reason'],
    (s) => DECODE_ERRORS.map((reason): Sample => [{ reason }, s.decoder[reason]]),
  );
  counter(
    'flowsentry_decoder_events_total',
    'Other decoder events (templates, pending data, limits).',
    ['event'],
    (s) =>
      DECODE_EVENTS.filter((e) => e !== 'packets' && e !== 'records').map(
        (event): Sample => [{ event }, s.decoder[event]],
      ),
  );
  gauge('flowsentry_decoder_templates', 'Templates held.', [], (s) => single(s.state.templates));
  gauge('flowsentry_decoder_exporters', 'Exporters known.', [], (s) => single(s.state.exporters));
  gauge('flowsentry_decoder_pending_bytes', 'Data sets held until their template arrives.', [], (s) =>
    single(s.state.pendingBytes),
  );

  // Decoders, per exporter and version (the observation domains / source IDs of an exporter summed:
  // their number is the exporter's choice, not ours, and would make the label set unbounded).
  const perExporter = (read: (st: StreamSnapshot) => number) => (s: CollectorSnapshot) => {
    const sums = new Map<string, { exporter: string; version: string; value: number }>();
    for (const st of s.streams) {
      // Version 0: the counters of datagrams whose version could not be read.
      if (st.version === 0) continue;
      const key = `${st.address}/${st.version}`;
      const entry = sums.get(key) ?? { exporter: st.address, version: String(st.version), value: 0 };
      entry.value += read(st);
      sums.set(key, entry);
    }
    return [...sums.values()].map((e): Sample => [{ exporter: e.exporter, version: e.version }, e.value]);
  };
  const exporterLabels = ['exporter', 'version'];
  counter(
    'flowsentry_decoder_exporter_packets_total',
    'Datagrams decoded, per exporter and export version.',
    exporterLabels,
    perExporter((st) => st.packets),
  );
  counter(
    'flowsentry_decoder_exporter_records_total',
    'Flow records decoded, per exporter and export version.',
    exporterLabels,
    perExporter((st) => st.records),
  );
  counter(
    'flowsentry_decoder_exporter_errors_total',
    'Malformed sets and records from the exporter, counted and dropped.',
    exporterLabels,
    perExporter((st) => st.decode_errors),
  );
  counter(
    'flowsentry_decoder_exporter_missing_template_sets_total',
    'Data sets that arrived before their template (decoded later or dropped).',
    exporterLabels,
    perExporter((st) => st.missing_templates),
  );
  counter(
    'flowsentry_decoder_exporter_pending_dropped_sets_total',
    'Data sets dropped because their template never arrived in time.',
    exporterLabels,
    perExporter((st) => st.pending_dropped_sets),
  );
  gauge(
    'flowsentry_decoder_exporter_templates',
    'Templates held for the exporter.',
    exporterLabels,
    perExporter((st) => st.templates),
  );
  counter(
    'flowsentry_decoder_sequence_lost_records_total',
    'Records lost between exporter and collector, estimated from export sequence numbers.',
    ['exporter', 'version', 'domain'],
    (s) =>
      s.streams
        .filter((st) => st.version !== 0)
        .map(
          (st): Sample => [
            { exporter: st.address, version: String(st.version), domain: String(st.domain) },
            st.sequence_lost_records,
          ],
        ),
  );

  // The spool the decoders write (its size on disk is the storage writer's: storage/metrics.ts).
  counter(
    'flowsentry_collector_spool_dropped_records_total',
    'Decoded records dropped because the spool was full (the store is down or too slow).',
    [],
    (s) => single(s.spool.droppedRecords),
  );
  gauge(
    'flowsentry_collector_spool_pending_rows',
    'Decoded rows held by the decoders, not yet written to a spool file.',
    [],
    (s) => single(s.spool.pendingRows),
  );
}
