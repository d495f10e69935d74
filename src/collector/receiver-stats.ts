/**
 * Counters the receive thread writes and the main thread reads, one Float64 slot each per listener in a
 * SharedArrayBuffer (a single writer; readers see a recent value, which is all metrics need).
 */
export const RECEIVER_FIELDS = ['packets', 'bytes', 'queue_dropped_packets', 'queue_dropped_bytes'] as const;
export type ReceiverField = (typeof RECEIVER_FIELDS)[number];

export function createReceiverStats(listeners: number): SharedArrayBuffer {
  return new SharedArrayBuffer(8 * RECEIVER_FIELDS.length * listeners);
}

export function readReceiverStats(
  buffer: SharedArrayBuffer,
  listener: number,
): Record<ReceiverField, number> {
  const values = new Float64Array(buffer, 8 * RECEIVER_FIELDS.length * listener, RECEIVER_FIELDS.length);
  return Object.fromEntries(RECEIVER_FIELDS.map((name, i) => [name, values[i]!])) as Record<
    ReceiverField,
    number
  >;
}
