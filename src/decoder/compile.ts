import { lengthFits, lookupField } from './information-elements.js';
import type { FieldKind } from './record-fields.js';
import { firstOccurrences, type RecordDecoder, type TemplateField, VARIABLE_LENGTH } from './template.js';

/**
 * Generates one named function per template layout that reads a record with fixed offsets from a
 * DataView (one view per packet): no per-field closures, no objects, 64-bit counters as two 32-bit
 * halves. The generated source contains only numbers and property names from our own IE table, never
 * bytes from a packet. interpret.ts implements the same contract without code generation; the two are
 * tested against each other on every fixture and on random templates.
 */
export function compileRecordDecoder(fields: readonly TemplateField[], name: string): RecordDecoder {
  const source = generateSource(fields, name);
  return new Function(source)() as RecordDecoder;
}

export function generateSource(fields: readonly TemplateField[], name: string): string {
  if (!/^[A-Za-z_$][\w$]*$/.test(name)) throw new Error(`invalid decoder name ${name}`);
  const body: string[] = [];
  // `q` is the position of the current run of fixed-length fields, `at` the offset inside the run.
  let at = 0;
  let hasVariable = false;
  // An element repeated in a template is read once, at its first occurrence (see firstOccurrences).
  const first = firstOccurrences(fields);
  fields.forEach((field, index) => {
    const def = lookupField(field.id, field.enterprise);
    const decoded = def !== undefined && first[index] === true;
    if (field.length === VARIABLE_LENGTH) {
      hasVariable = true;
      // RFC 7011 §7: one length byte, or 255 followed by a 2-byte length. An octet array we decode
      // (a packet section) keeps where its content starts and how long it is.
      const keep = decoded && def.kind === 'octets' ? ` f.${def.name} = q; f.${def.lengthName} = n;` : '';
      body.push(
        `q += ${at}; n = v.getUint8(q); q += 1; if (n === 255) { n = v.getUint16(q); q += 2; }${keep} q += n;`,
      );
      at = 0;
      return;
    }
    if (decoded && lengthFits(def.kind, field.length)) {
      body.push(`f.${def.name} = ${readExpression(def.kind, field.length, `q + ${at}`)};`);
      if (def.kind === 'octets') body.push(`f.${def.lengthName} = ${field.length};`);
    }
    at += field.length;
  });
  const prologue = hasVariable ? 'let q = p, n = 0;' : 'const q = p;';
  return `"use strict";\nreturn function ${name}(v, p, f) {\n  ${prologue}\n  ${body.join('\n  ')}\n  return q + ${at};\n};`;
}

function readExpression(kind: FieldKind, length: number, at: string): string {
  switch (kind) {
    case 'ipv6':
    case 'octets':
      return at;
    case 'ipv4':
      return `v.getUint32(${at})`;
    case 'float64':
      return length === 8 ? `v.getFloat64(${at})` : `v.getFloat32(${at})`;
    case 'ntp':
      // NTP seconds since 1900 plus a 32-bit fraction, to epoch milliseconds (RFC 7011 §6.1.9/10).
      return `((v.getUint32(${at}) - 2208988800) * 1000 + Math.floor(v.getUint32(${at} + 4) / 4294967.296))`;
    case 'unsigned':
      return unsignedExpression(length, at);
  }
}

function unsignedExpression(length: number, at: string): string {
  switch (length) {
    case 1:
      return `v.getUint8(${at})`;
    case 2:
      return `v.getUint16(${at})`;
    case 3:
      return `(v.getUint16(${at}) * 256 + v.getUint8(${at} + 2))`;
    case 4:
      return `v.getUint32(${at})`;
    default: {
      // 5 to 8 bytes: high part times 2^32 plus the low 32 bits (exact below 2^53).
      const high = unsignedExpression(length - 4, at);
      return `(${high} * 4294967296 + v.getUint32(${at} + ${length - 4}))`;
    }
  }
}
