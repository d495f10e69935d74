import { createHash, timingSafeEqual } from 'node:crypto';
import bearerAuth from '@fastify/bearer-auth';
import { normalizeIP } from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import ipaddr from 'ipaddr.js';
import { parseHostPort } from '../common/ip.js';
import type { Logger } from '../common/logger.js';
import type { TOKEN_SCOPES } from '../config/schema.js';

export type TokenScope = (typeof TOKEN_SCOPES)[number];

/** Who a request acts as: the name and scope of its token. */
export interface Principal {
  readonly name: string;
  readonly scope: TokenScope;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The token's holder; null when the API has no tokens (open) or before authentication. */
    principal: Principal | null;
  }
}

export interface TokenSettings {
  /** FLOWSENTRY_API_TOKEN: read-write, acting as "api-token". */
  readonly token: string;
  readonly tokens: ReadonlyArray<{
    readonly name: string;
    readonly token: string;
    readonly scope: TokenScope;
  }>;
}

/** The name FLOWSENTRY_API_TOKEN acts under. */
export const ENV_TOKEN_NAME = 'api-token';

/** Methods a read-only token may use. */
const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/**
 * The configured tokens, kept as SHA-256 digests and compared in constant time (every token is
 * compared, and digests have one length, so neither the position nor the length of a match leaks).
 */
export class TokenRegistry {
  private readonly entries: ReadonlyArray<Principal & { readonly digest: Buffer }>;

  constructor(settings: TokenSettings) {
    const list: Array<Principal & { digest: Buffer }> = [];
    if (settings.token)
      list.push({ name: ENV_TOKEN_NAME, scope: 'read-write', digest: digest(settings.token) });
    for (const t of settings.tokens) list.push({ name: t.name, scope: t.scope, digest: digest(t.token) });
    this.entries = list;
  }

  /** False when no token is configured: the API is open. */
  get enabled(): boolean {
    return this.entries.length > 0;
  }

  lookup(key: string): Principal | null {
    const d = digest(key);
    let found: Principal | null = null;
    for (const e of this.entries) {
      if (timingSafeEqual(d, e.digest) && found === null) found = { name: e.name, scope: e.scope };
    }
    return found;
  }

  /** The principal of an `Authorization: Bearer <token>` header, or null. */
  fromHeader(header: string | undefined): Principal | null {
    if (!header?.startsWith('Bearer ')) return null;
    return this.lookup(header.slice(7).trim());
  }
}

/**
 * The rate limiter's key: the token's name for a valid token, otherwise the client address (IPv6 by
 * /64), so that requests with wrong or missing tokens share their address's budget.
 */
export function rateLimitKey(tokens: TokenRegistry): (request: FastifyRequest) => string {
  return (request) => {
    const principal = tokens.enabled ? tokens.fromHeader(request.headers.authorization) : null;
    return principal ? `token:${principal.name}` : `address:${normalizeIP(request.ip, 64)}`;
  };
}

/**
 * Requires a valid bearer token on every route of `scope` (and its 404s), checked in preParsing:
 * before the body is read, and after the rate limiter's onRequest hook, so rejected requests count
 * against the limit too. Read-only tokens get 403 on anything but GET/HEAD/OPTIONS.
 */
export async function requireToken(scope: FastifyInstance, tokens: TokenRegistry): Promise<void> {
  await scope.register(bearerAuth, {
    keys: [],
    addHook: 'preParsing',
    verifyErrorLogLevel: 'info',
    auth: (key: string, request: FastifyRequest) => {
      request.principal = tokens.lookup(key);
      return request.principal !== null;
    },
    errorResponse: (error: Error) =>
      ({
        error: 'unauthorized',
        message: `${error.message}: send Authorization: Bearer <token>`,
      }) as unknown as { error: string },
  });
  scope.addHook('preParsing', async (request, reply) => {
    if (READ_METHODS.has(request.method) || request.principal?.scope === 'read-write') return;
    return reply.code(403).send({
      error: 'forbidden',
      message: `token "${request.principal?.name ?? '?'}" is read-only; ${request.method} needs a read-write token`,
    });
  });
  scope.addHook('onSend', async (_request, reply, payload) => {
    if (reply.statusCode === 401) reply.header('www-authenticate', 'Bearer realm="flowsentry"');
    return payload;
  });
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (!ipaddr.isValid(host)) return false;
  const parsed = ipaddr.process(host);
  return parsed.range() === 'loopback';
}

/**
 * Start-up warnings about API exposure: no token while listening beyond loopback, and tokens too
 * short to resist guessing. Never logs a token.
 */
export function warnAboutExposure(
  api: TokenSettings & { readonly listen: string },
  log: Pick<Logger, 'warn'>,
): void {
  const host = parseHostPort(api.listen)?.host ?? api.listen;
  if (!api.token && api.tokens.length === 0 && !isLoopback(host)) {
    log.warn(
      { listen: api.listen },
      'the API has no token and listens beyond loopback: anyone who reaches it can read findings and change detectors; set FLOWSENTRY_API_TOKEN or api.tokens',
    );
  }
  const short = [
    ...(api.token && api.token.length < 16 ? [ENV_TOKEN_NAME] : []),
    ...api.tokens.filter((t) => t.token.length < 16).map((t) => t.name),
  ];
  if (short.length > 0) {
    log.warn({ tokens: short }, 'API tokens shorter than 16 characters are easy to guess');
  }
}
