import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { tempDir } from '../../test/support/temp.js';
import { silentLogger } from '../common/logger.js';
import { openStore, type Store } from './clickhouse.js';
import { FLOW_COLUMN_LIST } from './flow-columns.js';
import { FlowWriter } from './flow-writer.js';
import { batchToken, Spool } from './spool.js';

/**
 * The server path (CLICKHOUSE_URL) against ClickHouse's HTTP interface contract. No ClickHouse server
 * can run on the test machines (no container engine; Debian ships 18.16), so this checks what
 * flowsentry sends: the statement, database, settings, credentials and the exact RowBinary body, and how
 * it reacts to the server's error responses. The same SQL and inserts run against the real engine
 * (chDB) in storage.test.ts.
 */
interface Received {
  url: URL;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

const scratch = tempDir();
const requests: Received[] = [];
/** Decides the response to each request; default: 200 with an empty body. */
let respond: (r: Received) => { status: number; body: string } = () => ({ status: 200, body: '' });
let server: Server;
let store: Store;

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const received = {
        url: new URL(req.url ?? '/', 'http://x'),
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      requests.push(received);
      const { status, body } = respond(received);
      res.writeHead(status, { 'content-type': 'text/plain', 'x-clickhouse-summary': '{}' });
      res.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  store = await openStore(
    { url: `http://127.0.0.1:${port}`, user: 'ingest', password: 's3cret', database: 'netsec' },
    scratch.path,
  );
});

afterAll(async () => {
  await store?.close();
  await new Promise<void>((r) => server.close(() => r()));
  scratch.remove();
});

const statement = (r: Received) => r.url.searchParams.get('query') ?? r.body.toString('utf8');

describe('ClickHouse server over HTTP', () => {
  test('opening creates the database with the configured credentials', () => {
    const create = requests.find((r) => statement(r).includes('CREATE DATABASE'));
    expect(statement(create!)).toBe('CREATE DATABASE IF NOT EXISTS netsec');
    expect(create!.headers.authorization).toBe(`Basic ${Buffer.from('ingest:s3cret').toString('base64')}`);
    expect(store.embedded).toBe(false);
  });

  test('spool files are streamed, concatenated, as the body of INSERT … FORMAT RowBinary with a deduplication token', async () => {
    requests.length = 0;
    const spool = new Spool(join(scratch.path, 'spool-ok'), 1 << 30);
    const a = spool.write(new Uint8Array(160 * 3).fill(1), 3)!;
    const b = spool.write(new Uint8Array(160 * 2).fill(2), 2)!;
    const writer = new FlowWriter(store, spool, silentLogger(), { retryMinMs: 10 });
    writer.start();
    writer.enqueue(a);
    writer.enqueue(b);
    await writer.drained();
    await writer.stop(false);
    expect(requests).toHaveLength(1);
    const insert = requests[0]!;
    expect(insert.url.searchParams.get('query')).toBe(
      `INSERT INTO flows (${FLOW_COLUMN_LIST}) FORMAT RowBinary`,
    );
    expect(insert.url.searchParams.get('database')).toBe('netsec');
    expect(insert.url.searchParams.get('insert_deduplication_token')).toBe(batchToken([a, b]));
    expect(insert.url.searchParams.get('deduplicate_blocks_in_dependent_materialized_views')).toBe('1');
    expect(insert.body.equals(Buffer.concat([Buffer.alloc(480, 1), Buffer.alloc(320, 2)]))).toBe(true);
    expect(writer.stats).toMatchObject({ insertedRows: 5, insertedBatches: 1, queuedFiles: 0 });
    expect(existsSync(a.path) || existsSync(b.path)).toBe(false);
  });

  test('a server error is retried with the same token; a file the server cannot parse is set aside alone', async () => {
    requests.length = 0;
    let failures = 1;
    respond = (r) => {
      if (!statement(r).startsWith('INSERT')) return { status: 200, body: '' };
      if (failures-- > 0)
        return {
          status: 500,
          body: 'Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)',
        };
      // Any body holding the bad file's bytes is refused as malformed input.
      if (r.body.includes(0xee))
        return {
          status: 400,
          body: 'Code: 27. DB::Exception: Cannot parse input. (CANNOT_PARSE_INPUT_ASSERTION_FAILED)',
        };
      return { status: 200, body: '' };
    };
    const spool = new Spool(join(scratch.path, 'spool-errors'), 1 << 30);
    const good = spool.write(new Uint8Array(160).fill(1), 1)!;
    const bad = spool.write(new Uint8Array(160).fill(0xee), 1)!;
    const after = spool.write(new Uint8Array(160).fill(3), 1)!;
    const writer = new FlowWriter(store, spool, silentLogger(), { retryMinMs: 10 });
    writer.start();
    for (const f of [good, bad, after]) writer.enqueue(f);
    await writer.drained();
    await writer.stop(false);
    const inserts = requests.filter((r) => statement(r).startsWith('INSERT'));
    // Batch (server error) → same batch again (malformed) → one by one: good, bad (set aside), after.
    expect(inserts.map((r) => r.url.searchParams.get('insert_deduplication_token'))).toEqual([
      batchToken([good, bad, after]),
      batchToken([good, bad, after]),
      batchToken([good]),
      batchToken([bad]),
      batchToken([after]),
    ]);
    expect(writer.stats).toMatchObject({
      insertedRows: 2,
      rejectedFiles: 1,
      rejectedRows: 1,
      insertFailures: 3,
      queuedFiles: 0,
    });
    expect(existsSync(join(spool.dir, 'rejected', bad.name))).toBe(true);
    expect(spool.bytes).toBe(0);
  });
});
