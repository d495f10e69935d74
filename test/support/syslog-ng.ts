import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { sleep } from './service.js';
import { findTool } from './softflowd.js';

/**
 * A real syslog-ng started by a test. Debian 12's syslog-ng-core conflicts with rsyslog (both
 * provide system-log-daemon), so where rsyslog is installed .ci/run unpacks the syslog-ng-core
 * package (apt-get download + dpkg-deb -x, its libraries installed normally) and names the unpacked
 * tree in FLOWSENTRY_SYSLOG_NG_ROOT; an installed syslog-ng on PATH works too.
 *
 * Its syslog() source takes RFC 5424 with RFC 6587 octet counting (it refuses LF framing: "Invalid
 * frame header"); each message is written as one JSON line by syslog-ng's format-json: the header
 * fields, the structured data it parsed (_SDATA) and, for a JSON MSG, what its json-parser read.
 */

interface Install {
  readonly binary: string;
  readonly env: Record<string, string>;
  readonly args: string[];
}

function locate(): Install | null {
  const root = process.env.FLOWSENTRY_SYSLOG_NG_ROOT;
  if (root) {
    const binary = join(root, 'usr', 'sbin', 'syslog-ng');
    const lib = join(root, 'usr', 'lib', 'syslog-ng');
    if (!existsSync(binary) || !existsSync(lib)) return null;
    const version = readdirSync(lib).find((d) => /^\d+\.\d+$/.test(d));
    if (!version) return null;
    return {
      binary,
      env: { LD_LIBRARY_PATH: lib },
      args: [`--module-path=${join(lib, version)}`],
    };
  }
  const binary = findTool('syslog-ng');
  return binary ? { binary, env: {}, args: [] } : null;
}

export const SYSLOG_NG = locate();

export function syslogNgVersion(): string {
  if (!SYSLOG_NG) return 'not available';
  const out = spawnSync(SYSLOG_NG.binary, ['--version', ...SYSLOG_NG.args], {
    env: { ...process.env, ...SYSLOG_NG.env },
    encoding: 'utf8',
  }).stdout;
  return /syslog-ng \d+ \(([^)]+)\)/.exec(out)?.[1] ?? out.split('\n')[0] ?? '';
}

export interface SyslogNgReceived {
  HOST: string;
  PROGRAM: string;
  MSGID: string;
  MESSAGE: string;
  PRI: string;
  _SDATA?: Record<string, Record<string, string>>;
  json?: Record<string, unknown>;
}

export class SyslogNg {
  private child: ChildProcess | null = null;
  private output = '';
  private readonly config: string;

  constructor(
    readonly dir: string,
    readonly ports: { tcp: number; udp: number; tls: number },
    tls: { certFile: string; keyFile: string },
  ) {
    mkdirSync(dir, { recursive: true });
    this.config = join(dir, 'syslog-ng.conf');
    const template =
      '$(format-json --scope sdata --scope nv-pairs --exclude SOURCE --exclude HOST_FROM --key HOST --key PROGRAM --key MSGID --key MESSAGE --key PRI)\\n';
    writeFileSync(
      this.config,
      `@version: 3.38
options { keep-hostname(yes); create-dirs(no); };
source s_tcp { syslog(ip("127.0.0.1") port(${ports.tcp}) transport("tcp") max-connections(20) log-msg-size(65536)); };
source s_tls { syslog(ip("127.0.0.1") port(${ports.tls}) transport("tls") max-connections(20) log-msg-size(65536)
  tls(key-file("${tls.keyFile}") cert-file("${tls.certFile}") peer-verify(optional-untrusted))); };
source s_udp { network(ip("127.0.0.1") port(${ports.udp}) transport("udp") flags(syslog-protocol) log-msg-size(65536)); };
parser p_json { json-parser(prefix("json.")); };
destination d_tcp { file("${this.file('tcp')}" template("${template}")); };
destination d_tls { file("${this.file('tls')}" template("${template}")); };
destination d_udp { file("${this.file('udp')}" template("${template}")); };
log { source(s_tcp); if { parser(p_json); }; destination(d_tcp); };
log { source(s_tls); if { parser(p_json); }; destination(d_tls); };
log { source(s_udp); if { parser(p_json); }; destination(d_udp); };
`,
    );
  }

  file(input: 'tcp' | 'udp' | 'tls'): string {
    return join(this.dir, `received-${input}.jsonl`);
  }

  logs(): string {
    return this.output;
  }

  async start(): Promise<void> {
    if (!SYSLOG_NG) throw new Error('syslog-ng is not available');
    const args = [
      '-F',
      '-f',
      this.config,
      ...SYSLOG_NG.args,
      '-R',
      join(this.dir, 'syslog-ng.persist'),
      '-p',
      join(this.dir, 'syslog-ng.pid'),
      '-c',
      join(this.dir, 'syslog-ng.ctl'),
      '--no-caps',
      '-e',
    ];
    const child = spawn(SYSLOG_NG.binary, args, {
      env: { ...process.env, ...SYSLOG_NG.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout!.on('data', (d: Buffer) => {
      this.output += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      this.output += d.toString();
    });
    const deadline = Date.now() + 15_000;
    for (const port of [this.ports.tcp, this.ports.tls]) {
      for (;;) {
        if (child.exitCode !== null) throw new Error(`syslog-ng exited:\n${this.output}`);
        const up = await new Promise<boolean>((resolve) => {
          const s = connect(port, '127.0.0.1');
          s.once('connect', () => {
            s.destroy();
            resolve(true);
          });
          s.once('error', () => resolve(false));
        });
        if (up) break;
        if (Date.now() > deadline) throw new Error(`syslog-ng does not listen on ${port}:\n${this.output}`);
        await sleep(50);
      }
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }

  received(input: 'tcp' | 'udp' | 'tls'): SyslogNgReceived[] {
    const path = this.file(input);
    if (!existsSync(path)) return [];
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as SyslogNgReceived);
  }

  async waitFor(
    input: 'tcp' | 'udp' | 'tls',
    check: (r: SyslogNgReceived[]) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<SyslogNgReceived[]> {
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
