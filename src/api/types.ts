import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';

/** The fastify instance with zod schemas, as every route module receives it. */
export type ZodApp = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  ZodTypeProvider
>;

/** The one error shape of the API. */
export const errorBody = z.object({
  error: z.string(),
  message: z.string(),
  details: z.array(z.string()).optional(),
});

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
    .pipe(z.array(item));
