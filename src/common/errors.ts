/**
 * One error class for the whole service, with a typed code union (see docs in README "Errors").
 * Hot paths never throw: a bad packet increments a counter and is dropped. These errors are for
 * start-up, configuration, storage and API edges.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'CLI_USAGE'
  | 'PCAP_INVALID'
  | 'STORAGE_UNAVAILABLE'
  | 'STORAGE_LOCKED'
  | 'STORAGE_INSERT_FAILED'
  | 'MIGRATION_FAILED'
  | 'LISTEN_FAILED'
  | 'DETECTOR_UNKNOWN'
  | 'FINDING_NOT_FOUND'
  | 'RUN_CANCELLED'
  | 'SCHEDULER_UNAVAILABLE';

const brand = Symbol.for('flowsentry.error');

export class FlowsentryError extends Error {
  readonly [brand] = true;
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'FlowsentryError';
  }
}

/** Works across package copies and worker boundaries where instanceof does not. */
export function isFlowsentryError(value: unknown): value is FlowsentryError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
}

export function errorMessage(value: unknown): string {
  return value instanceof Error ? value.message : String(value);
}
