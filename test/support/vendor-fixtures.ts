import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The vendor captures in test/fixtures/vendor (Apache-2.0, see their NOTICE): decode sequences
 * and their expected records. FLOWSENTRY_VENDOR_FIXTURES overrides the location.
 */
const here = dirname(fileURLToPath(import.meta.url));
export const VENDOR_DIR = resolve(
  process.env.FLOWSENTRY_VENDOR_FIXTURES ?? join(here, '..', 'fixtures', 'vendor'),
);

export interface VendorSequence {
  name: string;
  vendor: string;
  version: 5 | 9 | 10;
  port: number;
  files: string[];
  records: number;
  expected_error: boolean;
  accept_records?: number[];
  option_records: number;
  notes: string;
}

export interface ExpectedRecord {
  i: number;
  pkt: number;
  set_id?: number;
  domain?: number;
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
  proto?: number;
  bytes?: number;
  packets?: number;
  bytes_total?: number;
  packets_total?: number;
  initiator_bytes?: number;
  responder_bytes?: number;
  post_bytes?: number;
  post_packets?: number;
}

export function loadSequences(): VendorSequence[] {
  return JSON.parse(readFileSync(join(VENDOR_DIR, 'sequences.json'), 'utf8')) as VendorSequence[];
}

export function loadPayloads(sequence: VendorSequence): Uint8Array[] {
  return sequence.files.map((f) => new Uint8Array(readFileSync(join(VENDOR_DIR, f))));
}

export function loadExpected(sequence: VendorSequence): ExpectedRecord[] {
  const text = readFileSync(join(VENDOR_DIR, 'expected', `${sequence.name}.jsonl`), 'utf8');
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as ExpectedRecord);
}
