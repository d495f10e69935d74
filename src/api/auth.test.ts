import { describe, expect, test } from 'vitest';
import { ENV_TOKEN_NAME, isLoopback, TokenRegistry, warnAboutExposure } from './auth.js';

const settings = {
  token: 'env-token-0123456789',
  tokens: [
    { name: 'reader', token: 'reader-token-0123456789', scope: 'read-only' as const },
    { name: 'soar', token: 'soar-token-0123456789', scope: 'read-write' as const },
  ],
};

describe('tokens', () => {
  test('each token maps to its name and scope; FLOWSENTRY_API_TOKEN is read-write', () => {
    const t = new TokenRegistry(settings);
    expect(t.enabled).toBe(true);
    expect(t.lookup('env-token-0123456789')).toEqual({ name: ENV_TOKEN_NAME, scope: 'read-write' });
    expect(t.lookup('reader-token-0123456789')).toEqual({ name: 'reader', scope: 'read-only' });
    expect(t.fromHeader('Bearer soar-token-0123456789')).toEqual({ name: 'soar', scope: 'read-write' });
    for (const wrong of [
      '',
      'reader-token-012345678',
      'reader-token-0123456789x',
      'READER-TOKEN-0123456789',
    ]) {
      expect(t.lookup(wrong), wrong).toBeNull();
    }
    expect(t.fromHeader('Basic cmVhZGVyOng=')).toBeNull();
    expect(t.fromHeader('bearer reader-token-0123456789')).toBeNull();
    expect(t.fromHeader(undefined)).toBeNull();
  });

  test('no token configured: the API is open', () => {
    expect(new TokenRegistry({ token: '', tokens: [] }).enabled).toBe(false);
  });
});

describe('exposure warnings', () => {
  const warnings = (api: Parameters<typeof warnAboutExposure>[0]) => {
    const lines: unknown[][] = [];
    warnAboutExposure(api, { warn: (...args: unknown[]) => void lines.push(args) } as never);
    return lines;
  };

  test('an open API listening beyond loopback is warned about; on loopback or with a token it is not', () => {
    expect(warnings({ listen: '0.0.0.0:8080', token: '', tokens: [] })).toHaveLength(1);
    expect(warnings({ listen: '[::]:8080', token: '', tokens: [] })).toHaveLength(1);
    expect(warnings({ listen: '192.0.2.1:8080', token: '', tokens: [] })).toHaveLength(1);
    expect(warnings({ listen: '127.0.0.1:8080', token: '', tokens: [] })).toEqual([]);
    expect(warnings({ listen: '[::1]:8080', token: '', tokens: [] })).toEqual([]);
    expect(warnings({ listen: 'localhost:8080', token: '', tokens: [] })).toEqual([]);
    expect(warnings({ listen: '0.0.0.0:8080', ...settings })).toEqual([]);
  });

  test('short tokens are named, never shown', () => {
    const lines = warnings({
      listen: '127.0.0.1:8080',
      token: 'short',
      tokens: [{ name: 'x', token: 'tiny', scope: 'read-only' }],
    });
    expect(lines).toHaveLength(1);
    expect(JSON.stringify(lines)).toContain('"tokens":["api-token","x"]');
    expect(JSON.stringify(lines)).not.toMatch(/q7Zk|w9Pv/);
  });

  test('loopback addresses', () => {
    expect(isLoopback('127.0.0.1')).toBe(true);
    expect(isLoopback('127.8.9.10')).toBe(true);
    expect(isLoopback('::1')).toBe(true);
    expect(isLoopback('::ffff:127.0.0.1')).toBe(true);
    expect(isLoopback('0.0.0.0')).toBe(false);
    expect(isLoopback('::')).toBe(false);
    expect(isLoopback('flowsentry.example')).toBe(false);
  });
});
