import { cefFormat } from './cef.js';
import { jsonFormat } from './json.js';
import { leefFormat } from './leef.js';
import { rfc5424Format } from './rfc5424.js';
import type { Formatter } from './types.js';

export type { FormatContext, Formatter, Payload } from './types.js';
export { type FindingView, SYSLOG_SEVERITY, type ViewContext, viewOf } from './view.js';

/** The payload formats by their configuration name (`json-ecs` resolves to `json` before this). */
export const FORMATS = {
  rfc5424: rfc5424Format,
  cef: cefFormat,
  leef: leefFormat,
  json: jsonFormat,
} satisfies Record<'rfc5424' | 'cef' | 'leef' | 'json', Formatter>;

export type FormatName = keyof typeof FORMATS;
