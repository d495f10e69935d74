import { describe, expect, test } from 'vitest';
import { type CollectedFlow, CollectingSink, Decoder } from '../../src/decoder/index.js';
import {
  type ExpectedRecord,
  loadExpected,
  loadPayloads,
  loadSequences,
} from '../support/vendor-fixtures.js';

const RECEIVED_MS = Date.UTC(2026, 10, 23, 12, 0, 0);

interface Decoded {
  flows: Array<CollectedFlow & { pkt: number }>;
  decoder: Decoder;
}

function decodeSequence(payloads: Uint8Array[], compile: boolean): Decoded {
  const sink = new CollectingSink();
  const decoder = new Decoder(sink, { compile });
  const exporter = decoder.exporter('192.0.2.1');
  const flows: Decoded['flows'] = [];
  payloads.forEach((payload, index) => {
    const before = sink.flows.length;
    decoder.decode(exporter, payload, RECEIVED_MS);
    for (const f of sink.flows.slice(before)) flows.push({ ...f, pkt: index + 1 });
  });
  return { flows, decoder };
}

/** The expected keys are information-element values as exported (see the fixtures' README). */
function actualFor(expected: ExpectedRecord, flow: CollectedFlow & { pkt: number }): Record<string, unknown> {
  const e = flow.elements;
  const map: Record<string, unknown> = {
    i: expected.i,
    pkt: flow.pkt,
    set_id: flow.template_id,
    domain: flow.observation_domain_id,
    src: flow.src_addr,
    dst: flow.dst_addr,
    sport: flow.src_port,
    dport: flow.dst_port,
    proto: flow.proto,
    bytes: e.octetDeltaCount,
    packets: e.packetDeltaCount,
    bytes_total: e.octetTotalCount,
    packets_total: e.packetTotalCount,
    initiator_bytes: e.initiatorOctets,
    responder_bytes: e.responderOctets,
    post_bytes: e.postOctetDeltaCount,
    post_packets: e.postPacketDeltaCount,
  };
  return Object.fromEntries(Object.keys(expected).map((k) => [k, map[k]]));
}

describe.each([
  ['compiled', true],
  ['interpreted', false],
])('vendor sequences (%s decoder)', (_label, compile) => {
  for (const sequence of loadSequences()) {
    test(`${sequence.name} (${sequence.vendor})`, () => {
      const { flows, decoder } = decodeSequence(loadPayloads(sequence), compile);
      const expected = loadExpected(sequence);
      if (sequence.accept_records) {
        expect(sequence.accept_records).toContain(flows.length);
      } else {
        expect(flows.length).toBe(sequence.records);
      }
      for (const record of expected) {
        const flow = flows[record.i];
        expect(flow, `record ${record.i}`).toBeDefined();
        expect(actualFor(record, flow!), `record ${record.i}`).toEqual(record);
      }
      expect(decoder.counters.records).toBe(flows.length);
      if (!sequence.expected_error) {
        const errors = decoder.streams().reduce((sum, s) => sum + s.decode_errors, 0);
        expect(errors).toBe(0);
      }
      expect(decoder.counters.option_records).toBe(sequence.option_records);
    });
  }
});
