import { z } from 'zod';
import type { DestinationStatus } from '../siem/index.js';
import type { ZodApp } from './types.js';

export interface SiemDeps {
  status(): readonly DestinationStatus[];
}

const destinationItem = z.object({
  name: z.string(),
  url: z.string(),
  transport: z.enum(['udp', 'tcp', 'tls']),
  format: z.enum(['rfc5424', 'cef', 'leef', 'json']),
  framing: z.enum(['octet-counting', 'lf', 'datagram']),
  header: z.enum(['rfc5424', 'rfc3164']),
  connected: z.boolean(),
  sent: z.number().describe('messages written (flushed for TCP/TLS), resends included'),
  resent: z.number().describe('sent again after a connection error'),
  failed: z.number().describe('writes that failed (retried)'),
  connection_failures: z.number(),
  truncated: z.number().describe('shortened to fit maxMessageBytes'),
  dropped: z.number().describe('could not be sent at all'),
  skipped: z.number().describe('forward=false or outside the filter'),
  queued: z.number().describe('finding versions waiting'),
  oldest_unsent_age_seconds: z.number(),
  position: z.number().describe('every finding version at or below this is done'),
  last_error: z.string().nullable(),
  last_sent_at: z.string().nullable(),
});

/** GET /api/v1/siem: each SIEM destination's delivery state. */
export function siemRoutes(app: ZodApp, deps: SiemDeps | undefined): void {
  app.get(
    '/api/v1/siem',
    { schema: { response: { 200: z.object({ destinations: z.array(destinationItem) }) } } },
    async () => ({
      destinations: (deps?.status() ?? []).map((d) => ({
        name: d.name,
        url: d.url,
        transport: d.transport,
        format: d.format,
        framing: d.framing,
        header: d.header,
        connected: d.connected,
        sent: d.sent,
        resent: d.resent,
        failed: d.failed,
        connection_failures: d.connectionFailures,
        truncated: d.truncated,
        dropped: d.dropped,
        skipped: d.skipped,
        queued: d.queued,
        oldest_unsent_age_seconds: Math.round(d.oldestUnsentAgeSeconds * 1000) / 1000,
        position: d.position,
        last_error: d.lastError,
        last_sent_at: d.lastSentAt,
      })),
    }),
  );
}
