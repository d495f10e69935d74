import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { canonicalAddress, isValidCidr } from '../common/ip.js';

/** The fastify instance with zod schemas, as every route module receives it. */
export type ZodApp = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  ZodTypeProvider
>;

/** The one error shape of the API. */
export const errorBody = z
  .object({
    error: z.string().describe('machine-readable code: bad_request, unauthorized, forbidden, not_found, ...'),
    message: z.string(),
    details: z.array(z.string()).optional(),
  })
  .meta({ id: 'Error' });

/** Error answers every route can give, for the OpenAPI document. */
export const commonErrors = {
  400: errorBody,
  401: errorBody,
  403: errorBody,
  413: errorBody,
  429: errorBody,
  500: errorBody,
  503: errorBody,
} as const;

export const isoTime = z.iso.datetime({
  offset: true,
  message: 'expected an ISO 8601 time such as 2026-11-23T10:00:00Z',
});

/** An error a route throws to answer with a status and a code (never a 500). */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly details?: readonly string[],
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Comma-separated lists in query strings (`?detector=a,b`), also given as repeated parameters. */
export const csv = <T extends z.ZodType<string, string>>(item: T) =>
  z
    .union([z.string(), z.array(z.string())])
    .transform((v) =>
      (Array.isArray(v) ? v : [v])
        .flatMap((s) => s.split(','))
        .map((s) => s.trim())
        .filter(Boolean),
    )
    .pipe(z.array(item).max(100));

/** An IPv4 or IPv6 address (IPv4-mapped IPv6 accepted), as its canonical text. */
export const ipAddress = z
  .string()
  .max(64)
  .refine((s) => canonicalAddress(s) !== null, { message: 'expected an IPv4 or IPv6 address' })
  .transform((s) => canonicalAddress(s)!);

/** An address or a CIDR (10.0.0.0/8, 2001:db8::/32); a bare address is its /32 or /128. */
export const ipOrCidr = z
  .string()
  .max(64)
  .refine((s) => (s.includes('/') ? isValidCidr(s) : canonicalAddress(s) !== null), {
    message: 'expected an IP address or a CIDR such as 10.0.0.0/8',
  })
  .transform((s) => {
    if (s.includes('/')) return s;
    const a = canonicalAddress(s)!;
    return `${a}/${a.includes(':') ? 128 : 32}`;
  });

/** Epoch ms of an ISO time already validated by `isoTime`. */
export const ms = (iso: string): number => Date.parse(iso);

/**
 * Type-level check that a response schema serialises exactly the type it is built for: every field
 * of T is in the schema (a field added to T without the schema would otherwise be dropped from the
 * answer by the serializer) and the schema has no field T lacks. Fails to compile otherwise.
 */
type SameKeys<A, B> = [Exclude<keyof A, keyof B> | Exclude<keyof B, keyof A>] extends [never] ? true : false;
export type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? SameKeys<A, B> : false) : false;

export function derivedFrom<T>() {
  return <S extends z.ZodType>(schema: S, ..._check: Same<z.output<S>, T> extends true ? [] : [never]): S =>
    schema;
}
