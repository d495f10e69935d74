import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import { type ErrorCode, isFlowsentryError } from '../common/errors.js';
import { ApiError } from './types.js';

/**
 * Status and API code of every project error code that can reach the API. A Record over ErrorCode,
 * so a code added to src/common/errors.ts does not compile until it is mapped here: a coded error is
 * never a 500.
 */
export const CODE_STATUS: Readonly<Record<ErrorCode, readonly [number, string]>> = {
  CONFIG_INVALID: [400, 'bad_request'],
  CLI_USAGE: [400, 'bad_request'],
  PCAP_INVALID: [400, 'bad_request'],
  DETECTOR_UNKNOWN: [404, 'not_found'],
  FINDING_NOT_FOUND: [404, 'not_found'],
  RUN_CANCELLED: [409, 'cancelled'],
  STORAGE_UNAVAILABLE: [503, 'unavailable'],
  STORAGE_LOCKED: [503, 'unavailable'],
  STORAGE_INSERT_FAILED: [503, 'unavailable'],
  MIGRATION_FAILED: [503, 'unavailable'],
  LISTEN_FAILED: [503, 'unavailable'],
  SCHEDULER_UNAVAILABLE: [503, 'unavailable'],
};

/** API codes of the 4xx statuses fastify and its plugins raise themselves. */
export const STATUS_CODES: Readonly<Record<number, string>> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  406: 'not_acceptable',
  408: 'request_timeout',
  409: 'conflict',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  431: 'headers_too_large',
};

/** ClickHouse exception names (and codes) that are the request's fault or the store's state, not a bug. */
export const CLICKHOUSE_ERRORS: ReadonlyArray<{
  readonly types: readonly string[];
  readonly codes: readonly string[];
  readonly status: number;
  readonly code: string;
  readonly message: string;
}> = [
  {
    types: ['TIMEOUT_EXCEEDED'],
    codes: ['159'],
    status: 503,
    code: 'query_timeout',
    message: 'the query ran longer than the API allows; narrow the time range or add filters',
  },
  {
    types: ['MEMORY_LIMIT_EXCEEDED', 'TOO_MANY_ROWS', 'TOO_MANY_BYTES', 'TOO_MANY_ROWS_OR_BYTES'],
    codes: ['241', '158', '307', '396'],
    status: 503,
    code: 'query_too_large',
    message: 'the query needs more than the store allows; narrow the time range or add filters',
  },
];

/** Errors of the connection to the store (a server that went away). */
const NETWORK_ERRORS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
]);

/** Replaces every secret in a text with ***, for anything that could carry one back to a client. */
export function redactor(secrets: readonly string[]): (text: string) => string {
  const list = [...new Set(secrets.filter((s) => s.length >= 4))].sort((a, b) => b.length - a.length);
  return (text) => list.reduce((t, s) => t.split(s).join('***'), text);
}

/**
 * Errors fastify raises before routing (a malformed URL escape, a path parameter over the length
 * limit), which the error handler never sees: the same shape, the URL not echoed.
 */
export function frameworkErrors(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const status = typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 400;
  const message =
    error.code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? 'a path parameter is longer than 128 characters'
      : error.code === 'FST_ERR_BAD_URL'
        ? 'the URL is not validly percent-encoded'
        : 'bad request';
  void reply.code(status).send({ error: STATUS_CODES[status] ?? 'bad_request', message });
}

function fieldOf(v: { instancePath: string; params?: unknown }): string {
  return (
    v.instancePath.replace(/^\//, '').replace(/\//g, '.') ||
    ((v.params as { issue?: { path?: unknown[] } })?.issue?.path?.join('.') ?? '')
  );
}

/**
 * One error shape everywhere: `{"error": "<code>", "message": "...", "details"?: [...]}`, with the
 * status the error deserves. 5xx answers never carry the error's own text (it is logged instead); no
 * answer carries a stack trace.
 */
export function installErrorHandler(app: FastifyInstance, secrets: readonly string[]): void {
  const redact = redactor(secrets);
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (hasZodFastifySchemaValidationErrors(error)) {
      const details = error.validation.map((v) => {
        const field = fieldOf(v);
        return `${field ? `${field}: ` : ''}${v.message}`;
      });
      return reply.code(400).send({ error: 'bad_request', message: redact(details.join('; ')) });
    }
    if (isResponseSerializationError(error)) {
      request.log.error({ err: error, issues: error.cause.issues }, 'response does not match its schema');
      return reply
        .code(500)
        .send({ error: 'internal_error', message: 'internal error; see the service log' });
    }
    if (error instanceof ApiError) {
      return reply.code(error.statusCode).send({
        error: error.code,
        message: redact(error.message),
        ...(error.details ? { details: error.details.map(redact) } : {}),
      });
    }
    if (isFlowsentryError(error)) {
      const [status, code] = CODE_STATUS[error.code] ?? [503, 'unavailable'];
      if (status >= 500) request.log.error({ err: error }, 'request failed');
      // Multi-line messages (detector parameter problems) become one line and a details list.
      const [first, ...rest] = redact(error.message)
        .split('\n')
        .map((l) => l.trim());
      return reply.code(status).send({
        error: code,
        message: rest.length > 0 ? `${first} ${rest.join('; ')}` : (first ?? ''),
        ...(rest.length > 0 ? { details: rest } : {}),
      });
    }
    const ch = error as unknown as { type?: unknown; code?: unknown };
    const known = CLICKHOUSE_ERRORS.find(
      (e) =>
        (typeof ch.type === 'string' && e.types.includes(ch.type)) ||
        (typeof ch.code === 'string' && e.codes.includes(ch.code) && typeof ch.type === 'string'),
    );
    if (known) {
      request.log.warn({ err: redact(error.message), url: request.routeOptions.url }, known.code);
      return reply.code(known.status).send({ error: known.code, message: known.message });
    }
    if (typeof ch.code === 'string' && NETWORK_ERRORS.has(ch.code)) {
      request.log.error({ err: error }, 'storage unreachable');
      return reply.code(503).send({ error: 'unavailable', message: 'storage unavailable' });
    }
    const status = typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 500;
    if (status >= 500) {
      request.log.error({ err: error }, 'request failed');
      return reply
        .code(status)
        .send({ error: 'internal_error', message: 'internal error; see the service log' });
    }
    return reply
      .code(status)
      .send({ error: STATUS_CODES[status] ?? 'bad_request', message: redact(error.message) });
  });
}
