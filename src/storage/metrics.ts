import { Histogram, type Registry } from 'prom-client';
import { observedCounter, observedGauge, single } from '../common/metrics.js';
import type { FlowWriter } from './flow-writer.js';

/**
 * The flow writer's metrics: its queue (spool files the store has not taken yet), inserts (rows,
 * batches, failures, latency) and the spool's size on disk. Counters are read from the writer's
 * stats at every scrape; the latency histogram is observed at every insert.
 */
export function registerStorageMetrics(
  registry: Registry,
  writer: FlowWriter,
  spool: { readonly bytes: number },
): void {
  const stats = () => writer.stats;
  observedCounter(
    registry,
    'flowsentry_storage_inserted_rows_total',
    'Flow rows inserted into the store.',
    [],
    () => single(stats().insertedRows),
  );
  observedCounter(
    registry,
    'flowsentry_storage_insert_batches_total',
    'INSERT statements that succeeded (one or more spool files each).',
    [],
    () => single(stats().insertedBatches),
  );
  observedCounter(
    registry,
    'flowsentry_storage_insert_failures_total',
    'Failed inserts (retried, or the spool file set aside when malformed).',
    [],
    () => single(stats().insertFailures),
  );
  observedCounter(
    registry,
    'flowsentry_storage_rejected_rows_total',
    'Rows of spool files the store refused as malformed (set aside, not retried).',
    [],
    () => single(stats().rejectedRows),
  );
  observedGauge(
    registry,
    'flowsentry_storage_queued_rows',
    'Decoded rows in spool files waiting for the store.',
    [],
    () => single(stats().queuedRows),
  );
  observedGauge(registry, 'flowsentry_storage_queued_files', 'Spool files waiting for the store.', [], () =>
    single(stats().queuedFiles),
  );
  observedGauge(
    registry,
    'flowsentry_storage_spool_bytes',
    'Bytes of decoded flows on disk waiting for the store.',
    [],
    () => single(spool.bytes),
  );
  observedGauge(
    registry,
    'flowsentry_storage_last_insert_timestamp_seconds',
    'When the last insert succeeded (Unix seconds, 0: none yet).',
    [],
    () => single(stats().lastInsertMs / 1000),
  );
  const insertSeconds = new Histogram({
    name: 'flowsentry_storage_insert_seconds',
    help: 'Time per insert batch.',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const previous = writer.onInsert;
  writer.onInsert = (rows, seconds) => {
    previous?.(rows, seconds);
    insertSeconds.observe(seconds);
  };
}
