import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { sleep } from './service.js';
import { findTool } from './softflowd.js';

/**
 * A real rsyslog (Debian's rsyslog + rsyslog-gnutls) started by a test: its own configuration with
 * absolute scratch paths, high ports on 127.0.0.1, run in the foreground (`rsyslogd -n`) and, when
 * the test runs as root and setpriv exists, as nobody, so nothing in it needs privileges.
 *
 * Every input has its own ruleset and output file; each received message becomes one JSON line
 * built by rsyslog itself: its properties (hostname, app-name, msgid, pri, structured-data, msg,
 * rawmsg), two values picked by the property replacer from the parsed trees, and the whole tree
 * `$!` that mmpstrucdata (RFC 5424 SD-PARAMs) and mmjsonparse (a JSON MSG) fill.
 */

export const RSYSLOGD = findTool('rsyslogd');
const GTLS = [
  '/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so',
  '/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so',
];
export const HAS_GTLS = GTLS.some((p) => existsSync(p));

export function rsyslogVersion(): string {
  if (!RSYSLOGD) return 'not installed';
  const out = spawnSync(RSYSLOGD, ['-v'], { encoding: 'utf8' }).stdout;
  return /rsyslogd\s+(\S+)/.exec(out)?.[1] ?? out.split('\n')[0] ?? '';
}

export type RsyslogInput =
  | { readonly name: string; readonly kind: 'udp' | 'tcp'; readonly port: number }
  | {
      readonly name: string;
      readonly kind: 'tls';
      readonly port: number;
      /** anon: any client; x509/certvalid: the client must show a certificate from the CA. */
      readonly authMode: 'anon' | 'x509/certvalid';
    };

export interface RsyslogTls {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/** One message as rsyslog wrote it. */
export interface Received {
  raw: string;
  hostname: string;
  app: string;
  msgid: string;
  pri: string;
  sd: string;
  msg: string;
  /** `$!rfc5424-sd!flowsentry@32473!id` through the property replacer. */
  sdFindingId: string;
  /** `$!event!id` through the property replacer (mmjsonparse). */
  jsonEventId: string;
  parsed: Record<string, unknown> & { 'rfc5424-sd'?: Record<string, Record<string, string>> };
}

const TEMPLATE = `template(name="record" type="list") {
  constant(value="{\\"raw\\":\\"") property(name="rawmsg" format="json")
  constant(value="\\",\\"hostname\\":\\"") property(name="hostname" format="json")
  constant(value="\\",\\"app\\":\\"") property(name="app-name" format="json")
  constant(value="\\",\\"msgid\\":\\"") property(name="msgid" format="json")
  constant(value="\\",\\"pri\\":\\"") property(name="pri" format="json")
  constant(value="\\",\\"sd\\":\\"") property(name="structured-data" format="json")
  constant(value="\\",\\"msg\\":\\"") property(name="msg" format="json" droplastlf="on")
  constant(value="\\",\\"sdFindingId\\":\\"") property(name="$!rfc5424-sd!flowsentry@32473!id" format="json")
  constant(value="\\",\\"jsonEventId\\":\\"") property(name="$!event!id" format="json")
  constant(value="\\",\\"parsed\\":") property(name="$!")
  constant(value="}\\n")
}`;

export class Rsyslog {
  private child: ChildProcess | null = null;
  private output = '';
  private readonly config: string;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly dir: string,
    readonly inputs: readonly RsyslogInput[],
    readonly tls?: RsyslogTls,
  ) {
    mkdirSync(join(dir, 'spool'), { recursive: true });
    this.config = join(dir, 'rsyslog.conf');
    const tlsGlobal = tls
      ? ` DefaultNetstreamDriverCAFile="${tls.caFile}" DefaultNetstreamDriverCertFile="${tls.certFile}" DefaultNetstreamDriverKeyFile="${tls.keyFile}"`
      : '';
    const lines = [
      `global(workDirectory="${join(dir, 'spool')}" maxMessageSize="64k" parser.escapeControlCharacterTab="off"${tlsGlobal})`,
      'module(load="imudp")',
      'module(load="imtcp" maxSessions="50")',
      'module(load="mmpstrucdata")',
      'module(load="mmjsonparse")',
      TEMPLATE,
    ];
    for (const input of inputs) {
      lines.push(
        `ruleset(name="${input.name}") {`,
        '  action(type="mmpstrucdata")',
        '  action(type="mmjsonparse" cookie="")',
        `  action(type="omfile" file="${this.file(input.name)}" template="record")`,
        '}',
      );
      if (input.kind === 'tls') {
        lines.push(
          `input(type="imtcp" address="127.0.0.1" port="${input.port}" ruleset="${input.name}" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="${input.authMode}")`,
        );
      } else {
        const module = input.kind === 'udp' ? 'imudp' : 'imtcp';
        lines.push(
          `input(type="${module}" address="127.0.0.1" port="${input.port}" ruleset="${input.name}")`,
        );
      }
    }
    writeFileSync(this.config, `${lines.join('\n')}\n`);
  }

  file(input: string): string {
    return join(this.dir, `received-${input}.jsonl`);
  }

  /** `rsyslogd -N1`: the configuration is valid. */
  validate(): void {
    const r = spawnSync(RSYSLOGD!, ['-N1', '-f', this.config], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`rsyslog config invalid:\n${r.stdout}${r.stderr}`);
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  logs(): string {
    return this.output;
  }

  async start(): Promise<void> {
    if (!RSYSLOGD) throw new Error('rsyslogd is not installed');
    const args = ['-n', '-f', this.config, '-i', join(this.dir, 'rsyslogd.pid')];
    let command = RSYSLOGD;
    let prefix: string[] = [];
    if (process.getuid?.() === 0 && findTool('setpriv')) {
      // Unprivileged: nobody must be able to write the scratch directory and read the keys.
      chmodSync(this.dir, 0o777);
      chmodSync(join(this.dir, 'spool'), 0o777);
      for (const f of this.tls ? [this.tls.caFile, this.tls.certFile, this.tls.keyFile] : [])
        chmodSync(f, 0o644);
      command = findTool('setpriv')!;
      prefix = ['--reuid=65534', '--regid=65534', '--clear-groups', RSYSLOGD];
    }
    const child = spawn(command, [...prefix, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', (d: Buffer) => {
      this.output += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      this.output += d.toString();
    });
    this.exited = new Promise((r) => child.once('exit', () => r()));
    const deadline = Date.now() + 15_000;
    for (const input of this.inputs) {
      for (;;) {
        if (!this.running) throw new Error(`rsyslogd exited:\n${this.output}`);
        if (await listening(input)) break;
        if (Date.now() > deadline)
          throw new Error(`rsyslogd does not listen on ${input.port}:\n${this.output}`);
        await sleep(50);
      }
    }
  }

  /** SIGTERM (rsyslog writes what it holds) and wait. */
  async stop(): Promise<void> {
    if (this.running) this.child!.kill('SIGTERM');
    await this.exited;
  }

  /** SIGKILL: the receiver disappears without closing anything. */
  async kill(): Promise<void> {
    if (this.running) this.child!.kill('SIGKILL');
    await this.exited;
  }

  received(input: string): Received[] {
    const path = this.file(input);
    if (!existsSync(path)) return [];
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => {
        try {
          return JSON.parse(l) as Received;
        } catch (error) {
          throw new Error(`rsyslog wrote a line that is not JSON (${(error as Error).message}): ${l}`);
        }
      });
  }

  /** Waits until `check` holds for what an input received; fails with what it has. */
  async waitFor(
    input: string,
    check: (received: Received[]) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<Received[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = this.received(input);
      if (check(got)) return got;
      if (Date.now() > deadline) {
        throw new Error(
          `timed out waiting for ${what} on ${input} (${got.length} received):\n${this.output}`,
        );
      }
      await sleep(100);
    }
  }
}

/** TCP: connect() succeeds. UDP: the port is bound in /proc/net/udp. */
async function listening(input: RsyslogInput): Promise<boolean> {
  if (input.kind === 'udp') {
    // Lines look like "  12: 0100007F:2A0E 00000000:0000 07 ...": local address, port in hex.
    const port = `:${input.port.toString(16).toUpperCase().padStart(4, '0')}`;
    return readFileSync('/proc/net/udp', 'utf8')
      .split('\n')
      .some((l) => l.trim().split(/\s+/)[1]?.endsWith(port) === true);
  }
  return new Promise((resolve) => {
    const s = connect(input.port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
