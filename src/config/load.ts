import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { errorMessage, FlowsentryError } from '../common/errors.js';
import { type Config, configSchema } from './schema.js';

type Env = Record<string, string | undefined>;

/**
 * Environment variables and the configuration field each sets. These names are a public contract
 * (acceptance checks and later issues rely on them); add, never rename.
 */
export const ENVIRONMENT: ReadonlyArray<{
  name: string;
  path: readonly string[];
  kind: 'string' | 'list' | 'number';
  description: string;
}> = [
  {
    name: 'FLOWSENTRY_DATA_DIR',
    path: ['dataDir'],
    kind: 'string',
    description: 'embedded ClickHouse data, spool, templates (./data)',
  },
  {
    name: 'FLOWSENTRY_LISTEN_UDP',
    path: ['collector', 'listen'],
    kind: 'list',
    description: 'UDP listeners (0.0.0.0:2055,0.0.0.0:4739)',
  },
  {
    name: 'FLOWSENTRY_LISTEN_HTTP',
    path: ['api', 'listen'],
    kind: 'string',
    description: 'REST API address (127.0.0.1:8080)',
  },
  {
    name: 'CLICKHOUSE_URL',
    path: ['storage', 'clickhouse', 'url'],
    kind: 'string',
    description: 'ClickHouse server instead of embedded chDB',
  },
  {
    name: 'CLICKHOUSE_USER',
    path: ['storage', 'clickhouse', 'user'],
    kind: 'string',
    description: 'server user (default)',
  },
  {
    name: 'CLICKHOUSE_PASSWORD',
    path: ['storage', 'clickhouse', 'password'],
    kind: 'string',
    description: 'server password',
  },
  {
    name: 'CLICKHOUSE_DATABASE',
    path: ['storage', 'clickhouse', 'database'],
    kind: 'string',
    description: 'database (flowsentry)',
  },
  {
    name: 'CLICKHOUSE_CLUSTER',
    path: ['storage', 'cluster', 'name'],
    kind: 'string',
    description: 'run the migrations ON CLUSTER (Replicated + Distributed)',
  },
  {
    name: 'REDIS_URL',
    path: ['scheduler', 'redisUrl'],
    kind: 'string',
    description: 'schedule detectors with BullMQ',
  },
  {
    name: 'FLOWSENTRY_API_TOKEN',
    path: ['api', 'token'],
    kind: 'string',
    description: 'bearer token for /api',
  },
  {
    name: 'FLOWSENTRY_INTERNAL_NETWORKS',
    path: ['detection', 'internalNetworks'],
    kind: 'list',
    description: 'CIDRs counted as internal',
  },
  {
    name: 'FLOWSENTRY_THREAT_INTEL',
    path: ['detection', 'threatIntel'],
    kind: 'list',
    description: 'indicator files or URLs',
  },
  {
    name: 'FLOWSENTRY_SYSLOG_URL',
    path: ['siem', 'syslogUrl'],
    kind: 'string',
    description: 'udp|tcp|tls://host:port for findings',
  },
  {
    name: 'FLOWSENTRY_SYSLOG_FORMAT',
    path: ['siem', 'format'],
    kind: 'string',
    description: 'rfc5424 | cef | leef | json (json-ecs: same as json)',
  },
  {
    name: 'FLOWSENTRY_SYSLOG_FRAMING',
    path: ['siem', 'framing'],
    kind: 'string',
    description: 'octet-counting | lf (TCP/TLS; octet-counting)',
  },
  {
    name: 'FLOWSENTRY_SYSLOG_CA_FILE',
    path: ['siem', 'tls', 'caFile'],
    kind: 'string',
    description: 'PEM CA bundle for tls:// (Node roots)',
  },
  {
    name: 'FLOWSENTRY_SYSLOG_CERT_FILE',
    path: ['siem', 'tls', 'certFile'],
    kind: 'string',
    description: 'PEM client certificate for tls://',
  },
  {
    name: 'FLOWSENTRY_SYSLOG_KEY_FILE',
    path: ['siem', 'tls', 'keyFile'],
    kind: 'string',
    description: 'PEM client key for tls://',
  },
  {
    name: 'FLOWSENTRY_PUBLIC_URL',
    path: ['api', 'publicUrl'],
    kind: 'string',
    description: 'API address in SIEM links (http://<listen>)',
  },
  {
    name: 'FLOWSENTRY_ALLOWED_EXPORTERS',
    path: ['collector', 'allowedExporters'],
    kind: 'list',
    description: 'exporter allowlist (CIDRs)',
  },
  {
    name: 'FLOWSENTRY_RETENTION_DAYS',
    path: ['storage', 'retention', 'flowsDays'],
    kind: 'number',
    description: 'days of raw flows kept (30)',
  },
  { name: 'FLOWSENTRY_LOG_LEVEL', path: ['logLevel'], kind: 'string', description: 'info, debug, warn...' },
];

export interface LoadedConfig {
  readonly config: Readonly<Config>;
  /** The YAML file read, if any. */
  readonly file: string | null;
}

/**
 * Reads the YAML file named by FLOWSENTRY_CONFIG (if set), applies environment overrides, and
 * validates the result. A bad value stops start-up with a message that names the variable or the field.
 */
export function loadConfig(env: Env = process.env): LoadedConfig {
  const file = env.FLOWSENTRY_CONFIG ? resolve(env.FLOWSENTRY_CONFIG) : null;
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new FlowsentryError(
        'CONFIG_INVALID',
        `FLOWSENTRY_CONFIG: cannot read ${file}: ${errorMessage(error)}`,
      );
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (error) {
      throw new FlowsentryError(
        'CONFIG_INVALID',
        `FLOWSENTRY_CONFIG: ${file} is not valid YAML: ${errorMessage(error)}`,
      );
    }
    if (parsed !== null && parsed !== undefined && (typeof parsed !== 'object' || Array.isArray(parsed))) {
      throw new FlowsentryError(
        'CONFIG_INVALID',
        `FLOWSENTRY_CONFIG: ${file} must hold a mapping of settings`,
      );
    }
    raw = (parsed ?? {}) as Record<string, unknown>;
  }
  const fromEnv = new Map<string, string>();
  for (const variable of ENVIRONMENT) {
    const value = env[variable.name];
    if (value === undefined) continue;
    setPath(raw, variable.path, coerce(value, variable.kind));
    fromEnv.set(variable.path.join('.'), variable.name);
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    throw new FlowsentryError('CONFIG_INVALID', describeIssues(result.error, fromEnv, file));
  }
  return { config: deepFreeze(result.data), file };
}

function coerce(value: string, kind: 'string' | 'list' | 'number'): unknown {
  if (kind === 'list') {
    return value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  }
  if (kind === 'number') {
    const n = Number(value);
    return value.trim() !== '' && Number.isFinite(n) ? n : value;
  }
  return value;
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function describeIssues(error: z.ZodError, fromEnv: Map<string, string>, file: string | null): string {
  const lines = error.issues.map((issue) => {
    const path = issue.path
      .map((p) => (typeof p === 'number' ? `[${p}]` : String(p)))
      .join('.')
      .replace(/\.\[/g, '[');
    const dotted = issue.path.filter((p) => typeof p === 'string').join('.');
    let source: string | undefined;
    for (const [prefix, name] of fromEnv) {
      if (dotted === prefix || dotted.startsWith(`${prefix}.`)) source = name;
    }
    const where = source
      ? `${source} (${path || 'config'})`
      : `${path || 'config'}${file ? ` in ${file}` : ''}`;
    return `${where}: ${issue.message}`;
  });
  return `invalid configuration:\n  ${lines.join('\n  ')}`;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
