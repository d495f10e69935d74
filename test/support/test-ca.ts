import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** PEM files of a throw-away CA made with openssl for one test run. */
export interface TestCa {
  readonly caFile: string;
  /** Server certificate for DNS:siem.test and IP:127.0.0.1. */
  readonly serverCert: string;
  readonly serverKey: string;
  /** Client certificate (extendedKeyUsage clientAuth) from the same CA. */
  readonly clientCert: string;
  readonly clientKey: string;
  /** A CA nobody trusts, for a rejected chain. */
  readonly otherCaFile: string;
}

function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed:\n${r.stderr}`);
}

function keyAndCsr(dir: string, name: string, subject: string): void {
  openssl(dir, [
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.csr`,
    '-subj',
    subject,
  ]);
}

function selfSigned(dir: string, name: string, subject: string): void {
  openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-subj',
    subject,
  ]);
}

function sign(dir: string, name: string, extensions: string): void {
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-extfile',
    `${name}.ext`,
  ]);
}

export function makeTestCa(parent: string): TestCa {
  const dir = join(parent, 'pki');
  mkdirSync(dir, { recursive: true });
  selfSigned(dir, 'ca', '/CN=flowsentry test CA');
  selfSigned(dir, 'other-ca', '/CN=untrusted test CA');
  keyAndCsr(dir, 'server', '/CN=siem.test');
  sign(dir, 'server', 'subjectAltName=DNS:siem.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  keyAndCsr(dir, 'client', '/CN=flowsentry');
  sign(dir, 'client', 'extendedKeyUsage=clientAuth\n');
  return {
    caFile: join(dir, 'ca.pem'),
    serverCert: join(dir, 'server.pem'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.pem'),
    clientKey: join(dir, 'client.key'),
    otherCaFile: join(dir, 'other-ca.pem'),
  };
}
