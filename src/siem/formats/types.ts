import type { FindingView } from './view.js';

/** What every format knows about the sender. */
export interface FormatContext {
  /** Product version (CEF/LEEF header, ECS observer.version). */
  readonly version: string;
  /** This machine as the syslog header names it (also CEF dvchost, ECS observer.hostname). */
  readonly hostname: string;
  /** RFC 5424 SD-ID of the finding element, `flowsentry@<PEN>`. */
  readonly sdId: string;
}

/** A format's output: the RFC 5424 structured data (null: none, `-`) and the syslog MSG. */
export interface Payload {
  readonly structuredData: string | null;
  readonly msg: string;
}

export type Formatter = (view: FindingView, ctx: FormatContext) => Payload;

export const VENDOR = 'flowsentry';
export const PRODUCT = 'flowsentry';
