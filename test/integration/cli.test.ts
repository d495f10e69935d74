import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { CollectingSink, Decoder } from '../../src/decoder/index.js';
import { writeUdpPcap } from '../../src/pcap/pcap.js';
import { openStore, queryRows, type Store } from '../../src/storage/clickhouse.js';
import { CLI } from '../support/service.js';
import { tempDir } from '../support/temp.js';
import { loadPayloads, loadSequences } from '../support/vendor-fixtures.js';

/** The CLI commands other than serve, run as a user would run them. */
const scratch = tempDir();
let store: Store | null = null;
afterAll(async () => {
  await store?.close();
  scratch.remove();
});

function flowsentry(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [CLI, ...args], {
    env: { ...process.env, FLOWSENTRY_LOG_LEVEL: 'warn', ...env },
    encoding: 'utf8',
    timeout: 120_000,
  });
}

/** A capture of three vendor sequences, each from its own exporter, one second apart, an hour ago. */
const CAPTURE_START = Math.floor(Date.now() / 1000) * 1000 - 3_600_000;
const chosen = ['netflow5_mikrotik', 'netflow9_cisco_asa_1', 'ipfix_vmware_vds'];
const sequences = loadSequences().filter((s) => chosen.includes(s.name));
const datagrams = sequences.flatMap((s, i) =>
  loadPayloads(s).map((payload, j) => ({
    timeMs: CAPTURE_START + i * 1000 + j,
    srcAddress: `198.51.100.${i + 1}`,
    dstAddress: '192.0.2.1',
    srcPort: 50000,
    dstPort: s.version === 10 ? 4739 : 2055,
    payload,
  })),
);
const capture = join(scratch.path, 'vendors.pcap');
writeFileSync(capture, writeUdpPcap(datagrams));

function expectedFlows() {
  const sink = new CollectingSink();
  const decoder = new Decoder(sink);
  for (const d of datagrams) decoder.decode(decoder.exporter(d.srcAddress), d.payload, d.timeMs);
  return sink.flows;
}

describe('flowsentry CLI', () => {
  test('--help documents every command; an unknown command is a usage error', () => {
    const help = flowsentry(['--help']);
    expect(help.status).toBe(0);
    for (const command of [
      'serve',
      'migrate',
      'import <file.pcap>',
      'replay <file.pcap> --to',
      'decode <file.pcap>',
    ]) {
      expect(help.stdout).toContain(command);
    }
    expect(help.stdout).toContain('FLOWSENTRY_LISTEN_UDP');
    const unknown = flowsentry(['frobnicate']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command "frobnicate"/);
    // There is no generate command and no --quiet flag: both are usage errors (exit 2), not crashes.
    expect(help.stdout).not.toMatch(/generate|--quiet/);
    const generate = flowsentry(['generate']);
    expect([generate.status, generate.stderr.trim()]).toEqual([
      2,
      'flowsentry: unknown command "generate"; see flowsentry --help',
    ]);
    const quiet = flowsentry(['import', '--quiet', capture]);
    expect(quiet.status).toBe(2);
    expect(quiet.stderr).toMatch(/^flowsentry: Unknown option '--quiet'.*; see flowsentry --help\n$/);
    const missing = flowsentry(['import']);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/import: expected one capture file/);
  });

  test('import warns when a capture is older than the retention', () => {
    const old = join(scratch.path, 'old.pcap');
    writeFileSync(old, writeUdpPcap(datagrams.map((d) => ({ ...d, timeMs: d.timeMs - 90 * 86_400_000 }))));
    const run = flowsentry(['import', old], { FLOWSENTRY_DATA_DIR: join(scratch.path, 'old-data') });
    expect(run.status, run.stderr).toBe(0);
    const expected = expectedFlows().length;
    expect(JSON.parse(run.stdout)).toMatchObject({ records: expected, stored: expected, expiring: expected });
    expect(run.stderr).toContain(`warning: ${expected} records were captured more than 30 days ago`);
  });

  test('decode prints the flows of a capture as JSON lines', () => {
    const run = flowsentry(['decode', capture]);
    expect(run.status).toBe(0);
    const lines = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { src_addr: string; bytes: number; exporter_address: string });
    const expected = expectedFlows();
    expect(lines).toHaveLength(expected.length);
    expect(lines.map((l) => [l.exporter_address, l.src_addr, l.bytes])).toEqual(
      expected.map((f) => [f.exporter_address, f.src_addr, f.bytes]),
    );
    expect(JSON.parse(run.stderr).counters).toMatchObject({ records: expected.length });
  });

  test('migrate creates the schema; import stores a capture with capture times as receive times', async () => {
    const dataDir = join(scratch.path, 'data');
    const migrate = flowsentry(['migrate'], { FLOWSENTRY_DATA_DIR: dataDir });
    expect(migrate.status, migrate.stderr).toBe(0);

    const imported = flowsentry(['import', capture, '--port', '2055', '--port', '4739'], {
      FLOWSENTRY_DATA_DIR: dataDir,
    });
    expect(imported.status, imported.stderr).toBe(0);
    const expected = expectedFlows();
    expect(JSON.parse(imported.stdout)).toMatchObject({
      datagrams: datagrams.length,
      records: expected.length,
      stored: expected.length,
      decode_errors: 0,
      dropped: 0,
      expiring: 0,
    });

    store = await openStore({ url: '', user: 'default', password: '', database: 'flowsentry' }, dataDir);
    const tables = await queryRows<{ name: string }>(
      store,
      "SELECT name FROM system.tables WHERE database = 'flowsentry' ORDER BY name",
    );
    expect(tables.map((t) => t.name)).toEqual([
      'allowlist_rules',
      'detector_runs',
      'detector_settings',
      'finding_contributions',
      'finding_events',
      'findings',
      'flows',
      'flows_1h',
      'flows_1h_mv',
      'flows_1m',
      'flows_1m_mv',
      'schema_migrations',
      'siem_outbox',
    ]);
    const rows = await queryRows<{ exporter: string; received: number; flows: number; bytes: number }>(
      store,
      `SELECT IPv6NumToString(exporter_address) AS exporter, min(toUnixTimestamp(time_received)) AS received,
              count() AS flows, sum(bytes) AS bytes
       FROM flows GROUP BY exporter ORDER BY exporter`,
    );
    expect(rows).toEqual(
      sequences.map((_sequence, i) => {
        const flows = expected.filter((f) => f.exporter_address === `198.51.100.${i + 1}`);
        return {
          exporter: `::ffff:198.51.100.${i + 1}`,
          received: Math.floor((CAPTURE_START + i * 1000) / 1000),
          flows: flows.length,
          bytes: flows.reduce((sum, f) => sum + f.bytes, 0),
        };
      }),
    );
  });
});
