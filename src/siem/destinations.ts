import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { errorMessage, FlowsentryError } from '../common/errors.js';
import type { Config } from '../config/index.js';
import { type Finding, severityRank } from '../findings/model.js';
import { facilityCode, parseSyslogUrl, type SiemDestinationConfig } from './config.js';
import { FORMATS, type FormatName } from './formats/index.js';
import { printableAscii } from './formats/text.js';
import type { Framing, RenderSpec } from './message.js';
import type { TransportOptions } from './transports/index.js';

/** One destination, resolved from the configuration: what the forwarder needs and nothing to check. */
export interface Destination {
  readonly name: string;
  readonly url: string;
  readonly transport: 'udp' | 'tcp' | 'tls';
  readonly format: FormatName;
  readonly framing: Framing;
  readonly header: 'rfc5424' | 'rfc3164';
  readonly maxMessageBytes: number;
  readonly updateIntervalMs: number;
  readonly render: RenderSpec;
  readonly transportOptions: TransportOptions;
  readonly accepts: (finding: Finding) => boolean;
  /** The configuration path, for messages ("siem.destinations[1]"). */
  readonly path: string;
}

export interface DestinationContext {
  readonly version: string;
  /** Detector ids that exist: a filter naming another one stops start-up. */
  readonly detectors?: ReadonlySet<string>;
}

type DestinationInput = Omit<SiemDestinationConfig, 'format'> & { format: SiemDestinationConfig['format'] };

/** minSeverity, detectors and techniques (a technique matches itself and its sub-techniques). */
export function findingFilter(filter: SiemDestinationConfig['filter']): (f: Finding) => boolean {
  const min = severityRank(filter.minSeverity);
  const detectors = new Set(filter.detectors);
  const techniques = filter.techniques;
  return (f) =>
    severityRank(f.severity) >= min &&
    (detectors.size === 0 || detectors.has(f.detector)) &&
    (techniques.length === 0 ||
      f.technique_ids.some((t) => techniques.some((p) => t === p || t.startsWith(`${p}.`))));
}

function readPem(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new FlowsentryError('CONFIG_INVALID', `${field}: cannot read ${path}: ${errorMessage(error)}`);
  }
}

/**
 * Every configured destination: the one of FLOWSENTRY_SYSLOG_URL (named `siem.name`, "default")
 * first, then `siem.destinations`. Reads the TLS files; a problem stops start-up naming the field.
 */
export function resolveDestinations(config: Readonly<Config>, ctx: DestinationContext): Destination[] {
  const siem = config.siem;
  const inputs: Array<{ d: DestinationInput; path: string; env: boolean }> = [];
  if (siem.syslogUrl) {
    inputs.push({
      d: {
        name: siem.name,
        url: siem.syslogUrl,
        format: siem.format,
        framing: siem.framing,
        header: siem.header,
        maxMessageBytes: siem.maxMessageBytes,
        facility: siem.facility,
        updateIntervalSeconds: siem.updateIntervalSeconds,
        tls: siem.tls,
        filter: siem.filter,
      },
      path: 'siem',
      env: true,
    });
  }
  siem.destinations.forEach((d, i) => {
    inputs.push({ d, path: `siem.destinations[${i}]`, env: false });
  });
  const host = printableAscii(siem.hostname ?? osHostname(), 255);
  return inputs.map(({ d, path, env }) => {
    const target = parseSyslogUrl(d.url);
    const urlField = env ? 'FLOWSENTRY_SYSLOG_URL (siem.syslogUrl)' : `${path}.url`;
    if (!target) {
      throw new FlowsentryError('CONFIG_INVALID', `${urlField}: expected udp|tcp|tls://host:port`);
    }
    d.filter.detectors.forEach((id, j) => {
      if (ctx.detectors && !ctx.detectors.has(id)) {
        throw new FlowsentryError(
          'CONFIG_INVALID',
          `${path}.filter.detectors[${j}]: no detector "${id}" (known: ${[...ctx.detectors].join(', ')})`,
        );
      }
    });
    const tlsField = (name: string) => `${path}.tls.${name}`;
    const tls =
      target.transport === 'tls'
        ? {
            ...(d.tls?.caFile ? { ca: readPem(d.tls.caFile, tlsField('caFile')) } : {}),
            ...(d.tls?.certFile ? { cert: readPem(d.tls.certFile, tlsField('certFile')) } : {}),
            ...(d.tls?.keyFile ? { key: readPem(d.tls.keyFile, tlsField('keyFile')) } : {}),
            ...(d.tls?.serverName ? { serverName: d.tls.serverName } : {}),
            verifyServerName: d.tls?.verifyServerName ?? true,
          }
        : undefined;
    const format: FormatName = d.format === 'json-ecs' ? 'json' : d.format;
    const maxMessageBytes = d.maxMessageBytes ?? (target.transport === 'udp' ? 2048 : 8192);
    return {
      name: d.name,
      url: d.url,
      transport: target.transport,
      format,
      framing: target.transport === 'udp' ? 'datagram' : (d.framing ?? 'octet-counting'),
      header: d.header,
      maxMessageBytes,
      updateIntervalMs: d.updateIntervalSeconds * 1000,
      render: {
        format: FORMATS[format],
        header: {
          header: d.header,
          facility: facilityCode(d.facility),
          hostname: host,
          appName: siem.appName,
        },
        context: { version: ctx.version, hostname: host, sdId: `flowsentry@${siem.enterpriseNumber}` },
        maxBytes: maxMessageBytes,
      },
      transportOptions: {
        host: target.host,
        port: target.port,
        connectTimeoutMs: 10_000,
        writeTimeoutMs: 30_000,
        ...(tls ? { tls } : {}),
      },
      accepts: findingFilter(d.filter),
      path,
    };
  });
}
