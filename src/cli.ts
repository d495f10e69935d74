#!/usr/bin/env node
import dgram from 'node:dgram';
import http from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { errorMessage, FlowsentryError, isFlowsentryError } from './common/errors.js';
import { parseHostPort } from './common/ip.js';
import { createLogger, type Logger } from './common/logger.js';
import { ENVIRONMENT, loadConfig } from './config/index.js';
import { collectFlow, Decoder, type FlowRow } from './decoder/index.js';
import { createDetection, loadStoredSettings } from './detect/index.js';
import { clusterOptions, prepareStore, startService, VERSION } from './main.js';
import { readUdpDatagrams, streamUdpDatagrams, type UdpDatagram } from './pcap/pcap.js';
import { DatagramImporter } from './storage/importer.js';
import { loadMigrations, migrationStatements } from './storage/migrate.js';

const HELP = `flowsentry ${VERSION}: a network security monitor on NetFlow v5/v9 and IPFIX

Usage: flowsentry <command> [options]

Commands:
  serve                      Run the collector (UDP), the API (HTTP) and storage; what \`npm start\` runs.
                             Stops cleanly on SIGINT/SIGTERM (queued flows stay in the spool for next start).
  migrate                    Create or update the ClickHouse schema (migrations/*.sql) and exit.
      --print                Print the statements instead (ON CLUSTER forms when storage.cluster.name is set),
                             without connecting to ClickHouse.
  import <file.pcap>         Decode the NetFlow/IPFIX datagrams of a capture (pcap or pcapng) into the store,
                             offline: exporter = the datagram's source address, receive time = capture time.
      --port <n>             Only datagrams sent to this UDP port (repeatable; default: all UDP).
      --received-now         Use the current time as the receive time instead of the capture time.
  replay <file.pcap> --to <host:port>
                             Send a capture's UDP payloads again, in order, to a collector.
      --pps <n>              Packets per second (default: as fast as possible).
      --from <ip>            Source address to send from (e.g. 127.0.0.2, to appear as another exporter).
      --port <n>             Only datagrams sent to this UDP port (repeatable).
      --loop <n>             Send the capture n times (default 1).
  detect --from <ISO> --to <ISO>
                             Run the detectors over a past interval of traffic (the flows whose own times
                             fall in it, whenever they were received) and print the run's summary as JSON.
                             When \`serve\` is running on this configuration, the run is handed to it
                             (POST /api/v1/detections/run); otherwise the store is opened here.
      --detector <id,...>    Only these detectors (default: every enabled one).
      --no-forward           Do not forward the findings of this run to the SIEM.
  decode <file.pcap>         Print the flows a capture decodes to, one JSON object per line, and the decoder
                             counters on stderr (nothing is stored).
      --port <n>             Only datagrams sent to this UDP port (repeatable).

Options:
  -h, --help                 This help.
  -v, --version              Print the version.

Configuration: a YAML file named by FLOWSENTRY_CONFIG, overridden by these environment variables:
${ENVIRONMENT.map((e) => `  ${e.name.padEnd(30)} ${e.description}`).join('\n')}
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(HELP);
    return command === undefined ? 2 : 0;
  }
  if (command === '-v' || command === '--version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    process.stdout.write(HELP);
    return 0;
  }
  switch (command) {
    case 'serve':
      return serve();
    case 'migrate':
      return migrateCommand(rest);
    case 'import':
      return importCommand(rest);
    case 'replay':
      return replayCommand(rest);
    case 'decode':
      return decodeCommand(rest);
    case 'detect':
      return detectCommand(rest);
    default:
      throw new FlowsentryError('CLI_USAGE', `unknown command "${command}"; see flowsentry --help`);
  }
}

function setup(): { config: ReturnType<typeof loadConfig>['config']; log: Logger } {
  const { config } = loadConfig();
  return { config, log: createLogger(config.logLevel) };
}

async function serve(): Promise<number> {
  const { config, log } = setup();
  const service = await startService(config, log);
  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      if (++signals > 1) {
        log.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      log.info({ signal }, 'stopping');
      service.stop().then(
        () => resolve(0),
        (error: unknown) => {
          log.error({ err: errorMessage(error) }, 'error while stopping');
          resolve(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

async function migrateCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { print: { type: 'boolean' } }, strict: true });
  const { config, log } = setup();
  if (values.print) {
    const cluster = clusterOptions(config);
    for (const m of loadMigrations()) {
      process.stdout.write(`-- ${m.name}\n`);
      for (const statement of migrationStatements(m, cluster)) process.stdout.write(`${statement};\n\n`);
    }
    return 0;
  }
  const store = await prepareStore(config, log);
  await store.close();
  log.info('schema is up to date');
  return 0;
}

function portFilter(values: string[] | undefined): (d: UdpDatagram) => boolean {
  if (!values || values.length === 0) return () => true;
  const ports = new Set(
    values.map((v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 65535)
        throw new FlowsentryError('CLI_USAGE', `--port: "${v}" is not a port`);
      return n;
    }),
  );
  return (d) => ports.has(d.dstPort);
}

function oneFile(positionals: string[], command: string): string {
  if (positionals.length !== 1)
    throw new FlowsentryError('CLI_USAGE', `${command}: expected one capture file; see flowsentry --help`);
  return positionals[0]!;
}

async function importCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { port: { type: 'string', multiple: true }, 'received-now': { type: 'boolean' } },
  });
  const file = oneFile(positionals, 'import');
  const { config, log } = setup();
  const wanted = portFilter(values.port);
  const store = await prepareStore(config, log);
  const importer = new DatagramImporter(
    store,
    join(config.dataDir, 'spool', 'import'),
    {
      maxRows: config.storage.batch.maxRows,
      maxInsertRows: config.storage.batch.maxInsertRows,
      spoolMaxBytes: config.storage.spool.maxBytes,
      decoder: { compile: config.decoder.compile },
    },
    log.child({ component: 'storage' }),
  );
  const now = Date.now();
  // Rows are expired by time_received: a capture older than the retention would vanish at the next merge.
  const expiresBefore = now - config.storage.retention.flowsDays * 86_400_000;
  let expiring = 0;
  let datagrams = 0;
  // The capture is read a chunk at a time and decoding waits for the store when the spool is near
  // its limit, so memory does not grow with the capture. On a terminal, a progress line on stderr.
  const progress = process.stderr.isTTY ? new ProgressLine('import') : null;
  const stream = streamUdpDatagrams(
    file,
    progress
      ? {
          onProgress: (read, total) =>
            progress.update(`${importProgress(read, total)}, ${datagrams} datagrams`),
        }
      : {},
  );
  for await (const d of stream) {
    if (!wanted(d)) continue;
    datagrams++;
    if (importer.full) await importer.room();
    const received = values['received-now'] ? now : d.timeMs;
    const records = importer.add(d.srcAddress, d.payload, received);
    if (received < expiresBefore) expiring += records;
  }
  progress?.done();
  if (expiring > 0) {
    process.stderr.write(
      `flowsentry: warning: ${expiring} records were captured more than ${config.storage.retention.flowsDays} days ago and ` +
        'fall outside the retention (FLOWSENTRY_RETENTION_DAYS); ClickHouse will drop them. Import with --received-now, ' +
        'or raise the retention first.\n',
    );
  }
  const result = await importer.finish();
  await store.close();
  process.stdout.write(
    `${JSON.stringify({
      file,
      datagrams,
      records: result.records,
      stored: result.stored,
      decode_errors: result.decodeErrors,
      dropped: result.dropped,
      expiring,
      exporters: result.exporters,
    })}\n`,
  );
  return result.stored === result.records ? 0 : 1;
}

/** "12.0 MiB of 256.0 MiB (4 %)" */
function importProgress(read: number, total: number): string {
  const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
  const percent = total > 0 ? Math.floor((read / total) * 100) : 100;
  return `${mib(read)} of ${mib(total)} (${percent} %)`;
}

/** One line on stderr rewritten in place, at most every 200 ms; only used when stderr is a terminal. */
class ProgressLine {
  private last = 0;
  constructor(private readonly label: string) {}
  update(text: string): void {
    const now = performance.now();
    if (now - this.last < 200) return;
    this.last = now;
    process.stderr.write(`\r\x1b[K${this.label}: ${text}`);
  }
  done(): void {
    if (this.last > 0) process.stderr.write('\n');
  }
}

function isoArgument(value: string | undefined, name: string): number {
  const ms = value === undefined ? Number.NaN : Date.parse(value);
  if (value === undefined || !/^\d{4}-\d{2}-\d{2}T/.test(value) || !Number.isFinite(ms)) {
    throw new FlowsentryError(
      'CLI_USAGE',
      `--${name}: expected an ISO 8601 time such as 2026-11-23T10:00:00Z`,
    );
  }
  return ms;
}

async function detectCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      from: { type: 'string' },
      to: { type: 'string' },
      detector: { type: 'string', multiple: true },
      'no-forward': { type: 'boolean' },
    },
  });
  const from = isoArgument(values.from, 'from');
  const to = isoArgument(values.to, 'to');
  if (from >= to) throw new FlowsentryError('CLI_USAGE', '--to must be after --from');
  const detectors = values.detector
    ?.flatMap((d) => d.split(','))
    .map((d) => d.trim())
    .filter(Boolean);
  const { config, log } = setup();
  const request = {
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    ...(detectors && detectors.length > 0 ? { detectors } : {}),
    forward: !values['no-forward'],
  };
  const handed = await handToService(config, request);
  if (handed !== null) {
    process.stdout.write(`${JSON.stringify(handed.body)}\n`);
    return handed.status === 200 ? 0 : 1;
  }
  const store = await prepareStore(config, log);
  try {
    const detection = createDetection(config, store, log);
    await loadStoredSettings(detection, log);
    const { engine } = detection;
    for (const id of detectors ?? []) {
      if (!engine.detectors.has(id)) {
        throw new FlowsentryError(
          'CLI_USAGE',
          `--detector: no detector "${id}" (known: ${[...engine.detectors.keys()].join(', ')})`,
        );
      }
    }
    const tty = process.stderr.isTTY;
    const result = await engine.backfill({
      from,
      to,
      detectors,
      forward: request.forward,
      onProgress: tty
        ? (done, total, id) => process.stderr.write(`\r\x1b[Kdetect: ${done}/${total} windows (${id})`)
        : undefined,
    });
    if (tty) process.stderr.write('\n');
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return result.detectors.some((d) => d.errors.length > 0) ? 1 : 0;
  } finally {
    await store.close();
  }
}

/**
 * With the embedded store, only one process can open the data directory: when `serve` answers on the
 * configured API address, the backfill runs there (through the API) instead of failing on the lock.
 * Returns null when no service answers.
 */
async function handToService(
  config: ReturnType<typeof loadConfig>['config'],
  body: Record<string, unknown>,
): Promise<{ status: number; body: unknown } | null> {
  const target = parseHostPort(config.api.listen);
  if (!target) return null;
  const host = target.host === '0.0.0.0' ? '127.0.0.1' : target.host === '::' ? '::1' : target.host;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  // The run writes findings: a read-write token (FLOWSENTRY_API_TOKEN, or one of api.tokens).
  const token = config.api.token || config.api.tokens.find((t) => t.scope === 'read-write')?.token;
  if (token) headers.authorization = `Bearer ${token}`;
  const request = (method: string, path: string, payload?: string, timeoutMs = 0) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = http.request(
        { host, port: target.port, method, path, headers: payload ? headers : {}, timeout: timeoutMs },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            text += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end(payload);
    });
  try {
    const health = await request('GET', '/healthz', undefined, 2_000);
    if (!health.text.includes('"storage_engine"')) return null;
  } catch {
    return null;
  }
  process.stderr.write(`detect: handing the run to the service at ${config.api.listen}\n`);
  // No timeout: the service answers when the run is done.
  const answer = await request('POST', '/api/v1/detections/run', JSON.stringify(body));
  let parsed: unknown = answer.text;
  try {
    parsed = JSON.parse(answer.text);
  } catch {
    // Not JSON: print it as it came.
  }
  return { status: answer.status, body: parsed };
}

async function decodeCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { port: { type: 'string', multiple: true } },
  });
  const wanted = portFilter(values.port);
  const lines: string[] = [];
  const decoder = new Decoder({
    push(row: FlowRow, fields, template) {
      const { elements: _e, ...flow } = collectFlow(row, fields, template);
      lines.push(
        JSON.stringify({
          ...flow,
          time_received: new Date(flow.time_received).toISOString(),
          flow_start: new Date(flow.flow_start).toISOString(),
          flow_end: new Date(flow.flow_end).toISOString(),
        }),
      );
      if (lines.length >= 1000) process.stdout.write(`${lines.splice(0).join('\n')}\n`);
    },
  });
  for await (const d of streamUdpDatagrams(oneFile(positionals, 'decode'), { filter: wanted })) {
    decoder.decode(decoder.exporter(d.srcAddress), d.payload, d.timeMs);
  }
  if (lines.length > 0) process.stdout.write(`${lines.join('\n')}\n`);
  const counters = Object.fromEntries(Object.entries(decoder.counters).filter(([, v]) => v !== 0));
  process.stderr.write(`${JSON.stringify({ counters, exporters: decoder.streams() })}\n`);
  return 0;
}

async function replayCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      to: { type: 'string' },
      pps: { type: 'string' },
      from: { type: 'string' },
      port: { type: 'string', multiple: true },
      loop: { type: 'string' },
    },
  });
  const file = oneFile(positionals, 'replay');
  const target = values.to ? parseHostPort(values.to) : null;
  if (!target || target.port === 0)
    throw new FlowsentryError('CLI_USAGE', 'replay: --to <host:port> is required');
  const pps = values.pps === undefined ? 0 : Number(values.pps);
  if (!Number.isFinite(pps) || pps < 0)
    throw new FlowsentryError('CLI_USAGE', `--pps: "${values.pps}" is not a rate`);
  const loops = values.loop === undefined ? 1 : Number(values.loop);
  if (!Number.isInteger(loops) || loops < 1)
    throw new FlowsentryError('CLI_USAGE', `--loop: "${values.loop}" is not a count`);
  const datagrams = readUdpDatagrams(file).filter(portFilter(values.port));
  const socket = dgram.createSocket(target.host.includes(':') ? 'udp6' : 'udp4');
  if (values.from) {
    const from = values.from;
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, from, () => resolve());
    });
  }
  const started = performance.now();
  let sent = 0;
  const total = datagrams.length * loops;
  const send = (payload: Uint8Array) =>
    new Promise<void>((resolve, reject) =>
      socket.send(payload, target.port, target.host, (error) => (error ? reject(error) : resolve())),
    );
  while (sent < total) {
    const due =
      pps > 0 ? Math.min(total, Math.floor(((performance.now() - started) / 1000) * pps) + 1) : total;
    const batch: Array<Promise<void>> = [];
    while (sent < due && batch.length < 256) batch.push(send(datagrams[sent++ % datagrams.length]!.payload));
    await Promise.all(batch);
    if (pps > 0 && sent >= due) await new Promise((r) => setTimeout(r, 1));
  }
  socket.close();
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(
    `${JSON.stringify({ sent, seconds: Number(seconds.toFixed(3)), pps: Math.round(sent / seconds) })}\n`,
  );
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) {
      // An unknown option or a missing value: a usage error like the others, not a crash.
      process.stderr.write(`flowsentry: ${errorMessage(error)}; see flowsentry --help\n`);
      process.exitCode = 2;
    } else if (isFlowsentryError(error)) {
      process.stderr.write(`flowsentry: ${error.message}\n`);
      process.exitCode = error.code === 'CLI_USAGE' ? 2 : 1;
    } else {
      process.stderr.write(
        `flowsentry: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
      process.exitCode = 1;
    }
  },
);
