import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { tempDir } from '../../test/support/temp.js';
import { loadConfig } from './load.js';

const scratch = tempDir();
afterAll(() => scratch.remove());

function yamlFile(text: string): string {
  const path = join(scratch.path, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(path, text);
  return path;
}

function errorOf(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected the configuration to be rejected');
}

describe('configuration', () => {
  test('defaults match the documented contract', () => {
    const { config } = loadConfig({});
    expect(config.dataDir).toBe('./data');
    expect(config.collector.listen).toEqual(['0.0.0.0:2055', '0.0.0.0:4739']);
    expect(config.api.listen).toBe('127.0.0.1:8080');
    expect(config.storage.clickhouse).toEqual({
      url: '',
      user: 'default',
      password: '',
      database: 'flowsentry',
    });
    expect(config.scheduler.redisUrl).toBe('');
    expect(config.siem.format).toBe('rfc5424');
    expect(Object.isFrozen(config.collector.listen)).toBe(true);
  });

  test('environment variables override the file', () => {
    const file = yamlFile(
      'dataDir: /var/lib/x\ncollector:\n  listen: ["127.0.0.1:9995"]\nstorage:\n  retention:\n    flowsDays: 3\n',
    );
    const { config } = loadConfig({
      FLOWSENTRY_CONFIG: file,
      FLOWSENTRY_DATA_DIR: '/tmp/fs',
      FLOWSENTRY_LISTEN_UDP: '127.0.0.1:2055, [::1]:4739',
      FLOWSENTRY_LISTEN_HTTP: '0.0.0.0:9000',
      CLICKHOUSE_URL: 'http://ch:8123',
      CLICKHOUSE_USER: 'u',
      CLICKHOUSE_PASSWORD: 'p',
      CLICKHOUSE_DATABASE: 'flows_db',
      REDIS_URL: 'redis://127.0.0.1:6379',
      FLOWSENTRY_API_TOKEN: 'secret',
      FLOWSENTRY_INTERNAL_NETWORKS: '10.0.0.0/8,2001:db8::/32',
      FLOWSENTRY_THREAT_INTEL: '/etc/ti.txt',
      FLOWSENTRY_SYSLOG_URL: 'tcp://siem:6514',
      FLOWSENTRY_SYSLOG_FORMAT: 'cef',
    });
    expect(config.dataDir).toBe('/tmp/fs');
    expect(config.collector.listen).toEqual(['127.0.0.1:2055', '[::1]:4739']);
    expect(config.api.listen).toBe('0.0.0.0:9000');
    expect(config.storage.clickhouse).toEqual({
      url: 'http://ch:8123',
      user: 'u',
      password: 'p',
      database: 'flows_db',
    });
    expect(config.storage.retention.flowsDays).toBe(3);
    expect(config.scheduler.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(config.api.token).toBe('secret');
    expect(config.detection.internalNetworks).toEqual(['10.0.0.0/8', '2001:db8::/32']);
    expect(config.detection.threatIntel).toEqual(['/etc/ti.txt']);
    expect(config.siem).toMatchObject({ syslogUrl: 'tcp://siem:6514', format: 'cef' });
  });

  test.each([
    [
      'FLOWSENTRY_LISTEN_UDP',
      '0.0.0.0:99999',
      /FLOWSENTRY_LISTEN_UDP \(collector\.listen\[0\]\): expected host:port/,
    ],
    ['FLOWSENTRY_LISTEN_HTTP', 'localhost', /FLOWSENTRY_LISTEN_HTTP \(api\.listen\)/],
    ['CLICKHOUSE_URL', 'ch:8123', /CLICKHOUSE_URL \(storage\.clickhouse\.url\): expected http/],
    ['CLICKHOUSE_DATABASE', 'bad-name', /CLICKHOUSE_DATABASE \(storage\.clickhouse\.database\)/],
    ['REDIS_URL', 'http://x', /REDIS_URL \(scheduler\.redisUrl\)/],
    [
      'FLOWSENTRY_INTERNAL_NETWORKS',
      '10.0.0.0/8,10.1',
      /FLOWSENTRY_INTERNAL_NETWORKS \(detection\.internalNetworks\[1\]\)/,
    ],
    ['FLOWSENTRY_SYSLOG_URL', 'syslog.example:514', /FLOWSENTRY_SYSLOG_URL \(siem\.syslogUrl\)/],
    ['FLOWSENTRY_SYSLOG_FORMAT', 'xml', /FLOWSENTRY_SYSLOG_FORMAT \(siem\.format\)/],
    ['FLOWSENTRY_RETENTION_DAYS', 'ten', /FLOWSENTRY_RETENTION_DAYS \(storage\.retention\.flowsDays\)/],
    ['FLOWSENTRY_DATA_DIR', './data{x}', /FLOWSENTRY_DATA_DIR \(dataDir\): must not contain glob/],
  ])('%s=%s is rejected with a message naming it', (name, value, pattern) => {
    expect(errorOf({ [name]: value })).toMatch(pattern);
  });

  test('file errors name the field and the file', () => {
    const file = yamlFile('collector:\n  queueBytes: 12\n  lisen: []\n');
    const message = errorOf({ FLOWSENTRY_CONFIG: file });
    expect(message).toContain(`collector.queueBytes in ${file}`);
    expect(message).toMatch(/Unrecognized key: "lisen"/);
  });

  test('thread priorities are bounded: the receive thread may only be raised, the decoders only lowered', () => {
    expect(loadConfig({}).config.collector.receiveNice).toBe(0);
    const raisedDecoders = yamlFile('collector:\n  decoderNice: -1\n');
    expect(errorOf({ FLOWSENTRY_CONFIG: raisedDecoders })).toContain(
      `collector.decoderNice in ${raisedDecoders}`,
    );
    const loweredReceiver = yamlFile('collector:\n  receiveNice: 5\n');
    expect(errorOf({ FLOWSENTRY_CONFIG: loweredReceiver })).toContain(
      `collector.receiveNice in ${loweredReceiver}`,
    );
  });

  test('API tokens: named, scoped (read-only by default), unique; problems name the field, never the token', () => {
    const file = yamlFile(
      'api:\n  tokens:\n    - { name: analyst, token: tok-analyst-4d9e }\n    - { name: soar, token: tok-soar-71ab, scope: read-write }\n',
    );
    const { config } = loadConfig({ FLOWSENTRY_CONFIG: file, FLOWSENTRY_API_TOKEN: 'tok-env-3c2f' });
    expect(config.api.token).toBe('tok-env-3c2f');
    expect(config.api.tokens).toEqual([
      { name: 'analyst', token: 'tok-analyst-4d9e', scope: 'read-only' },
      { name: 'soar', token: 'tok-soar-71ab', scope: 'read-write' },
    ]);
    expect(config.api).toMatchObject({
      metricsAuth: false,
      docsAuth: true,
      rateLimit: { max: 600, windowSeconds: 60 },
      bodyLimitBytes: 65_536,
      maxUrlBytes: 8_192,
      queryTimeoutSeconds: 30,
      maxRangeDays: 31,
    });
    const duplicate = yamlFile(
      'api:\n  tokens:\n    - { name: a, token: tok-dup-9f8e }\n    - { name: a, token: tok-dup-9f8e }\n',
    );
    const message = errorOf({ FLOWSENTRY_CONFIG: duplicate });
    expect(message).toContain('api.tokens[1].name');
    expect(message).toContain('api.tokens[1].token');
    expect(
      errorOf({
        FLOWSENTRY_CONFIG: yamlFile('api:\n  tokens:\n    - { name: c, token: tok-c-5a1b, scope: admin }\n'),
      }),
    ).toContain('api.tokens[0].scope');
    expect(message).not.toContain('tok-dup-9f8e');
    const sameAsEnv = yamlFile('api:\n  tokens:\n    - { name: b, token: tok-env-3c2f }\n');
    expect(errorOf({ FLOWSENTRY_CONFIG: sameAsEnv, FLOWSENTRY_API_TOKEN: 'tok-env-3c2f' })).toContain(
      'api.tokens',
    );
  });

  test('unreadable or malformed files stop start-up', () => {
    expect(errorOf({ FLOWSENTRY_CONFIG: join(scratch.path, 'missing.yaml') })).toMatch(
      /^FLOWSENTRY_CONFIG: cannot read/,
    );
    expect(errorOf({ FLOWSENTRY_CONFIG: yamlFile('a: [') })).toMatch(/is not valid YAML/);
    expect(errorOf({ FLOWSENTRY_CONFIG: yamlFile('- 1\n- 2\n') })).toMatch(/must hold a mapping/);
  });
});
