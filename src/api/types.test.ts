import { expect, test } from 'vitest';
import { z } from 'zod';
import { derivedFrom } from './types.js';

interface Snapshot {
  a: number;
  b: string | null;
  nested: { c: number };
}

/**
 * derivedFrom is checked by the compiler (npm run typecheck compiles the tests): each @ts-expect-error
 * below is a schema that must not compile, and stops compiling as an error if it ever does.
 */
test('a response schema must serialise exactly the fields of its type', () => {
  const exact = z.object({ a: z.number(), b: z.string().nullable(), nested: z.object({ c: z.number() }) });
  expect(derivedFrom<Snapshot>()(exact)).toBe(exact);

  // A field added to the type but not to the schema: the serializer would drop it silently.
  // @ts-expect-error the schema lacks `nested`
  derivedFrom<Snapshot>()(z.object({ a: z.number(), b: z.string().nullable() }));
  // A nested field missing.
  // @ts-expect-error the schema lacks `nested.c`
  derivedFrom<Snapshot>()(z.object({ a: z.number(), b: z.string().nullable(), nested: z.object({}) }));
  // A field the type does not have.
  // @ts-expect-error the schema has `extra`
  derivedFrom<Snapshot>()(
    z.object({
      a: z.number(),
      b: z.string().nullable(),
      nested: z.object({ c: z.number() }),
      extra: z.number(),
    }),
  );
  // A field of another type.
  // @ts-expect-error `b` is a number in the schema, a string or null in the type
  derivedFrom<Snapshot>()(z.object({ a: z.number(), b: z.number(), nested: z.object({ c: z.number() }) }));

  // At run time the serializer indeed drops what the schema does not name (what the check prevents).
  const loose = z.object({ a: z.number() });
  expect(z.encode(loose, { a: 1, b: 'x' } as never)).toEqual({ a: 1 });
});
