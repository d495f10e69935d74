import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { loadPayloads, loadSequences } from '../../test/support/vendor-fixtures.js';
import { CollectingSink } from './collecting-sink.js';
import { compileRecordDecoder, generateSource } from './compile.js';
import { Decoder } from './decoder.js';
import { interpretRecordDecoder } from './interpret.js';
import { RecordFields } from './record-fields.js';
import { type TemplateField, VARIABLE_LENGTH } from './template.js';

// Elements we decode (with their usual and some unusual lengths), elements we skip, enterprise elements
// (including RFC 5103 reverse ones), and variable-length fields.
const fieldArb: fc.Arbitrary<TemplateField> = fc.oneof(
  fc.record({
    id: fc.constantFrom(
      1,
      2,
      4,
      5,
      6,
      7,
      10,
      11,
      14,
      16,
      17,
      21,
      22,
      23,
      24,
      32,
      34,
      48,
      58,
      61,
      85,
      86,
      136,
      152,
      153,
    ),
    enterprise: fc.constant(0),
    length: fc.integer({ min: 0, max: 9 }),
  }),
  fc.record({
    id: fc.constantFrom(8, 12, 15, 18),
    enterprise: fc.constant(0),
    length: fc.constantFrom(4, 4, 2, 16),
  }),
  fc.record({
    id: fc.constantFrom(27, 28, 62, 63),
    enterprise: fc.constant(0),
    length: fc.constantFrom(16, 16, 4),
  }),
  fc.record({
    id: fc.constantFrom(154, 155, 156, 157),
    enterprise: fc.constant(0),
    length: fc.constantFrom(8, 4),
  }),
  fc.record({ id: fc.constant(311), enterprise: fc.constant(0), length: fc.constantFrom(8, 4, 2) }),
  // Physical interfaces, system init time, frame size/type, section offset, IP total length.
  fc.record({
    id: fc.constantFrom(160, 224, 252, 253, 312, 408, 409),
    enterprise: fc.constant(0),
    length: fc.integer({ min: 0, max: 9 }),
  }),
  fc.record({ id: fc.constantFrom(324, 325), enterprise: fc.constant(0), length: fc.constantFrom(8, 4) }),
  // Packet sections: octet arrays of any fixed length, or variable length.
  fc.record({
    id: fc.constantFrom(313, 314, 315, 316, 317),
    enterprise: fc.constant(0),
    length: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.constant(VARIABLE_LENGTH)),
  }),
  fc.record({
    id: fc.integer({ min: 0, max: 600 }),
    enterprise: fc.constant(0),
    length: fc.integer({ min: 0, max: 20 }),
  }),
  fc.record({ id: fc.constantFrom(1, 2, 85), enterprise: fc.constant(29305), length: fc.constantFrom(4, 8) }),
  fc.record({
    id: fc.integer({ min: 1, max: 32767 }),
    enterprise: fc.constantFrom(9, 2636, 5951, 6876),
    length: fc.integer({ min: 1, max: 12 }),
  }),
  fc.record({
    id: fc.constantFrom(1, 8, 82, 95, 20000),
    enterprise: fc.constantFrom(0, 5951),
    length: fc.constant(VARIABLE_LENGTH),
  }),
);

/** A template and one record for it: fixed fields random bytes, variable fields with a valid prefix. */
const caseArb = fc.array(fieldArb, { minLength: 1, maxLength: 40 }).chain((fields) =>
  fc
    .tuple(
      ...fields.map((f) =>
        f.length === VARIABLE_LENGTH
          ? fc.tuple(fc.boolean(), fc.uint8Array({ minLength: 0, maxLength: 300 }))
          : fc.uint8Array({ minLength: f.length, maxLength: f.length }),
      ),
    )
    .map((parts) => {
      const chunks: number[] = [];
      parts.forEach((part) => {
        if (Array.isArray(part)) {
          const [long, data] = part as [boolean, Uint8Array];
          if (long || data.length >= 255) chunks.push(255, data.length >> 8, data.length & 255);
          else chunks.push(data.length);
          chunks.push(...data);
        } else {
          chunks.push(...(part as Uint8Array));
        }
      });
      return { fields, record: Uint8Array.from(chunks) };
    }),
);

function run(
  decoderKind: 'compiled' | 'interpreted',
  fields: TemplateField[],
  bytes: Uint8Array,
  offset: number,
) {
  const decode =
    decoderKind === 'compiled'
      ? compileRecordDecoder(fields, 'differential$decode')
      : interpretRecordDecoder(fields);
  const out = new RecordFields();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = decode(view, offset, out);
  return { end, out: { ...out } };
}

describe('compiled template decoders equal the interpreter', () => {
  test('on random templates and records', () => {
    fc.assert(
      fc.property(caseArb, fc.integer({ min: 0, max: 7 }), ({ fields, record }, pad) => {
        // Place the record at a non-zero offset of a larger buffer, as in a real packet.
        const bytes = new Uint8Array(pad + record.length + 3);
        bytes.set(record, pad);
        const compiled = run('compiled', fields, bytes, pad);
        const interpreted = run('interpreted', fields, bytes, pad);
        expect(compiled).toEqual(interpreted);
        expect(compiled.end).toBe(pad + record.length);
      }),
      { numRuns: 500 },
    );
  });

  test('on every vendor fixture, record by record', () => {
    for (const sequence of loadSequences()) {
      const results = [true, false].map((compile) => {
        const sink = new CollectingSink();
        const decoder = new Decoder(sink, { compile });
        const exporter = decoder.exporter('198.51.100.7');
        for (const payload of loadPayloads(sequence)) decoder.decode(exporter, payload, 1_700_000_000_000);
        return { flows: sink.flows, counters: decoder.counters };
      });
      expect(results[0]!.flows, sequence.name).toEqual(results[1]!.flows);
      expect({ ...results[0]!.counters, templates_compiled: 0 }).toEqual({
        ...results[1]!.counters,
        templates_compiled: 0,
      });
    }
  });

  test('generated source holds only numbers and our own identifiers', () => {
    const source = generateSource(
      [
        { id: 8, enterprise: 0, length: 4 },
        { id: 1, enterprise: 0, length: 8 },
        { id: 82, enterprise: 0, length: VARIABLE_LENGTH },
        { id: 7, enterprise: 0, length: 2 },
      ],
      'template_256$decode',
    );
    expect(source).toContain('function template_256$decode(v, p, f)');
    expect(source).toContain('f.sourceIPv4Address = v.getUint32(q + 0);');
    expect(source).toContain(
      'f.octetDeltaCount = (v.getUint32(q + 4) * 4294967296 + v.getUint32(q + 4 + 4));',
    );
    expect(source).toContain('f.sourceTransportPort = v.getUint16(q + 0);');
    expect(() => generateSource([], 'bad name')).toThrow(/invalid decoder name/);
  });
});
