import Fastify from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { z } from 'zod';
import { DetectionHarness } from '../../test/support/detection.js';
import { type ErrorCode, FlowsentryError } from '../common/errors.js';
import { queryRows } from '../storage/clickhouse.js';
import { CODE_STATUS, installErrorHandler, redactor } from './errors.js';
import { ApiError } from './types.js';

/** The one error handler: statuses and codes for every kind of error, one shape, nothing leaked. */

let h: DetectionHarness;
beforeAll(async () => {
  h = await DetectionHarness.open();
});
afterAll(async () => h?.close());

const SECRET = 'ch-password-s3cr3t';

function appThrowing(make: () => unknown) {
  const app = Fastify();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandler(app, [SECRET]);
  const api = app.withTypeProvider<ZodTypeProvider>();
  api.get('/throw', async () => {
    throw make();
  });
  api.get(
    '/typed',
    {
      schema: {
        querystring: z.strictObject({ n: z.coerce.number().int().max(5) }),
        response: { 200: z.object({ n: z.number() }) },
      },
    },
    async (request) => ({ n: request.query.n === 5 ? ('five' as unknown as number) : request.query.n }),
  );
  return app;
}

async function answer(make: () => unknown, url = '/throw') {
  const r = await appThrowing(make).inject(url);
  return { status: r.statusCode, body: JSON.parse(r.body) as Record<string, unknown>, raw: r.body };
}

describe('error handler', () => {
  test('every project error code has a status below 500 or a 503, never a 500', async () => {
    const codes = Object.keys(CODE_STATUS) as ErrorCode[];
    expect(codes.length).toBeGreaterThanOrEqual(12);
    for (const code of codes) {
      const r = await answer(() => new FlowsentryError(code, `${code} happened`));
      expect(r.status, code).not.toBe(500);
      expect(r.status, code).toBe(CODE_STATUS[code][0]);
      expect(r.body, code).toEqual({ error: CODE_STATUS[code][1], message: `${code} happened` });
    }
  });

  test('multi-line coded messages become a message and details', async () => {
    const r = await answer(
      () =>
        new FlowsentryError(
          'CONFIG_INVALID',
          'invalid detector parameters:\n  x.params.a: too small\n  x.params.b: not a number',
        ),
    );
    expect(r).toMatchObject({
      status: 400,
      body: {
        error: 'bad_request',
        message: 'invalid detector parameters: x.params.a: too small; x.params.b: not a number',
        details: ['x.params.a: too small', 'x.params.b: not a number'],
      },
    });
  });

  test('ApiError keeps its status, code and details; secrets in messages are masked', async () => {
    const r = await answer(() => new ApiError(409, 'conflict', `busy with ${SECRET}`, ['one']));
    expect(r).toEqual({
      status: 409,
      body: { error: 'conflict', message: 'busy with ***', details: ['one'] },
      raw: expect.any(String),
    });
  });

  test('request validation: 400 naming the field; response not matching its schema: a bare 500', async () => {
    const bad = await answer(() => null, '/typed?n=9');
    expect(bad.status).toBe(400);
    expect(bad.body).toEqual({ error: 'bad_request', message: expect.stringMatching(/^n: /) });
    const wrong = await answer(() => null, '/typed?n=5');
    expect(wrong).toMatchObject({
      status: 500,
      body: { error: 'internal_error', message: 'internal error; see the service log' },
    });
  });

  test('an unexpected error is a 500 without its message or stack', async () => {
    const r = await answer(() => new TypeError(`cannot read ${SECRET} of undefined`));
    expect(r.status).toBe(500);
    expect(r.body).toEqual({ error: 'internal_error', message: 'internal error; see the service log' });
    expect(r.raw).not.toMatch(/TypeError|at |s3cr3t|stack/);
  });

  test('fastify 4xx errors get their own codes', async () => {
    const tooLarge = Object.assign(new Error('Request body is too large'), { statusCode: 413 });
    expect(await answer(() => tooLarge)).toMatchObject({
      status: 413,
      body: { error: 'payload_too_large' },
    });
    const limited = Object.assign(new Error('Rate limit exceeded, retry in 1 minute'), { statusCode: 429 });
    expect(await answer(() => limited)).toMatchObject({ status: 429, body: { error: 'rate_limited' } });
  });

  test('a ClickHouse query stopped by its timeout is a 503 query_timeout; a failed query of ours a 500', async () => {
    let timeout: unknown;
    try {
      await queryRows(
        h.store,
        'SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) % 7 = 3',
        {},
        { readonly: true, timeoutSeconds: 1 },
      );
    } catch (error) {
      timeout = error;
    }
    expect(timeout).toBeDefined();
    expect(await answer(() => timeout)).toEqual({
      status: 503,
      body: {
        error: 'query_timeout',
        message: 'the query ran longer than the API allows; narrow the time range or add filters',
      },
      raw: expect.any(String),
    });

    let broken: unknown;
    try {
      await queryRows(h.store, 'SELECT no_such_column FROM flows');
    } catch (error) {
      broken = error;
    }
    const r = await answer(() => broken);
    expect(r.status).toBe(500);
    expect(r.raw).not.toContain('no_such_column');
  }, 30_000);

  test('a store that went away is a 503', async () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:8123'), { code: 'ECONNREFUSED' });
    expect(await answer(() => refused)).toEqual({
      status: 503,
      body: { error: 'unavailable', message: 'storage unavailable' },
      raw: expect.any(String),
    });
  });
});

test('redactor: every secret of 4 characters or more is masked, longest first', () => {
  const redact = redactor(['abcd', 'abcdef', 'xy', '']);
  expect(redact('abcdef and abcd and xy')).toBe('*** and *** and xy');
});
