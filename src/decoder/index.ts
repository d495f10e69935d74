export { type CollectedFlow, CollectingSink, collectFlow, formatAddress } from './collecting-sink.js';
export {
  DECODE_ERRORS,
  DECODE_EVENTS,
  DEFAULT_DECODER_OPTIONS,
  type DecodeError,
  type DecodeEvent,
  Decoder,
  type DecoderCounters,
  type DecoderOptions,
  type FlowSink,
  type PersistedState,
  type SamplingOverride,
  type StreamSnapshot,
  type TemplateSnapshot,
} from './decoder.js';
export { DIRECTION_EGRESS, DIRECTION_INGRESS, DIRECTION_UNKNOWN, FlowRow } from './flow-row.js';
export { RecordFields } from './record-fields.js';
export type { Layout, Template } from './template.js';
