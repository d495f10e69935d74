import { lengthFits, lookupField } from './information-elements.js';
import type { FieldKind, FieldName } from './record-fields.js';
import { firstOccurrences, type RecordDecoder, type TemplateField, VARIABLE_LENGTH } from './template.js';

interface Step {
  readonly length: number;
  readonly name: FieldName | null;
  readonly kind: FieldKind;
  /** Octet arrays: where their length goes. */
  readonly lengthName: FieldName | null;
}

/**
 * The reference decoder: walks the template's fields one by one, exactly as RFC 7011 §7 and RFC 3954 §5
 * describe the record layout. It is the fallback where code generation is disabled
 * (decoder.compile: false) and the oracle that compile.ts is tested against.
 */
export function interpretRecordDecoder(fields: readonly TemplateField[]): RecordDecoder {
  const first = firstOccurrences(fields);
  const steps: Step[] = fields.map((field, index) => {
    const def = lookupField(field.id, field.enterprise);
    const usable = def !== undefined && first[index] === true && lengthFits(def.kind, field.length);
    return {
      length: field.length,
      name: usable ? def.name : null,
      kind: def?.kind ?? 'unsigned',
      lengthName: usable ? (def.lengthName ?? null) : null,
    };
  });
  return (view, pos, out) => {
    const record = out as unknown as Record<FieldName, number>;
    let p = pos;
    for (const step of steps) {
      if (step.length === VARIABLE_LENGTH) {
        let n = view.getUint8(p);
        p += 1;
        if (n === 255) {
          n = view.getUint16(p);
          p += 2;
        }
        if (step.name !== null) {
          record[step.name] = p;
          record[step.lengthName!] = n;
        }
        p += n;
        continue;
      }
      if (step.name !== null) {
        record[step.name] = readValue(view, p, step.kind, step.length);
        if (step.lengthName !== null) record[step.lengthName] = step.length;
      }
      p += step.length;
    }
    return p;
  };
}

export function readValue(view: DataView, p: number, kind: FieldKind, length: number): number {
  switch (kind) {
    case 'ipv6':
    case 'octets':
      return p;
    case 'ipv4':
      return view.getUint32(p);
    case 'float64':
      return length === 8 ? view.getFloat64(p) : view.getFloat32(p);
    case 'ntp': {
      // Fraction of a second in units of 2^-32 s, truncated to milliseconds.
      const seconds = view.getUint32(p) - 2208988800;
      return seconds * 1000 + Math.floor(view.getUint32(p + 4) / 4294967.296);
    }
    case 'unsigned':
      return readUnsigned(view, p, length);
  }
}

/**
 * Big-endian unsigned integer of 1 to 8 bytes. Above 4 bytes: high part times 2^32 plus the low 32 bits,
 * exact below 2^53 and rounded once above it.
 */
export function readUnsigned(view: DataView, p: number, length: number): number {
  if (length > 4) return readUnsigned(view, p, length - 4) * 4294967296 + view.getUint32(p + length - 4);
  let value = 0;
  for (let i = 0; i < length; i++) value = value * 256 + view.getUint8(p + i);
  return value;
}
