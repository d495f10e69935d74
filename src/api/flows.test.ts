import { expect, test } from 'vitest';
import { z } from 'zod';
import { Conditions, defaultInterval, flowFilterShape } from './flows.js';

test('the default interval gives at most 300 points, from a minute to a week', () => {
  expect(defaultInterval(3_600_000)).toBe(60);
  expect(defaultInterval(5 * 3_600_000)).toBe(60);
  expect(defaultInterval(6 * 3_600_000)).toBe(300);
  expect(defaultInterval(86_400_000)).toBe(300);
  expect(defaultInterval(7 * 86_400_000)).toBe(3_600);
  expect(defaultInterval(300 * 86_400_000)).toBe(86_400);
  expect(defaultInterval(366 * 86_400_000)).toBe(604_800);
  expect(defaultInterval(3_650 * 86_400_000)).toBe(604_800);
});

test('filters: protocols by name or number, addresses as CIDR ranges in query parameters', () => {
  const filters = z.strictObject(flowFilterShape);
  expect(
    filters.parse({ protocol: 'TCP', port: '443', ip: '10.1.2.3', exporter: '::ffff:192.0.2.1' }),
  ).toEqual({
    protocol: 6,
    port: 443,
    ip: '10.1.2.3/32',
    exporter: '192.0.2.1',
  });
  expect(filters.parse({ protocol: '58' }).protocol).toBe(58);
  for (const bad of [
    { protocol: 'tcp; DROP' },
    { protocol: '256' },
    { port: '70000' },
    { ip: "10.0.0.0/8' OR 1=1" },
  ]) {
    expect(filters.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
  }
  const c = new Conditions().filters({ ip: '10.0.0.0/8', dst_port: 22 });
  expect(c.sql()).toBe(
    'WHERE ((src_addr >= {p0:IPv6} AND src_addr <= {p1:IPv6}) OR (dst_addr >= {p2:IPv6} AND dst_addr <= {p3:IPv6})) AND dst_port = {p4:UInt16}',
  );
  expect(c.params).toEqual({
    p0: '::ffff:a00:0',
    p1: '::ffff:aff:ffff',
    p2: '::ffff:a00:0',
    p3: '::ffff:aff:ffff',
    p4: 22,
  });
});
