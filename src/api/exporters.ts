import { z } from 'zod';
import type { StreamSnapshot } from '../decoder/index.js';
import type { CollectorView } from './system.js';
import { derivedFrom, errorBody, type ZodApp } from './types.js';

export interface ExportersDeps {
  readonly collector: CollectorView;
}

/** An item of GET /api/v1/exporters: a stream's counters (sequence_gaps aside) and its loss figures. */
export type ExporterItem = Omit<StreamSnapshot, 'sequence_gaps'> & {
  loss_ratio: number;
  loss_percent: number;
};

export const exporterItem = derivedFrom<ExporterItem>()(
  z
    .object({
      address: z.string(),
      version: z.number(),
      domain: z.number(),
      packets: z.number(),
      records: z.number(),
      option_records: z.number(),
      decode_errors: z.number(),
      missing_templates: z.number(),
      sequence_lost: z.number().describe('lost in the unit of the sequence: v9 packets, v5/IPFIX records'),
      sequence_lost_records: z.number().describe('records lost (estimated from records per packet for v9)'),
      sequence_reordered: z.number(),
      sequence_resets: z.number(),
      templates: z.number(),
      sampling_rate_unknown: z.number(),
      sampling_unresolved: z.number(),
      pending_decoded_sets: z.number(),
      pending_dropped_sets: z.number(),
      time_base_unknown: z.number(),
      packet_section_unreadable: z.number(),
      packet_section_not_ip: z.number(),
      first_seen: z.string(),
      last_seen: z.string(),
      loss_ratio: z
        .number()
        .min(0)
        .max(1)
        .describe('sequence_lost_records / (records + option_records + sequence_lost_records)'),
      loss_percent: z.number().min(0).max(100).describe('loss_ratio in percent, two decimals'),
    })
    .meta({ id: 'Exporter' }),
);

/** Loss of a stream: records the sequence numbers say were sent but never arrived, over all sent. */
export function lossFigures(
  s: Pick<StreamSnapshot, 'records' | 'option_records' | 'sequence_lost_records'>,
): {
  loss_ratio: number;
  loss_percent: number;
} {
  const sent = s.records + s.option_records + s.sequence_lost_records;
  const ratio = sent > 0 ? s.sequence_lost_records / sent : 0;
  return { loss_ratio: Math.round(ratio * 1e6) / 1e6, loss_percent: Math.round(ratio * 10_000) / 100 };
}

export function exportersRoutes(app: ZodApp, deps: ExportersDeps): void {
  app.get(
    '/api/v1/exporters',
    {
      schema: {
        summary: 'Exporters (one item per exporter, version and observation domain) with loss figures',
        tags: ['collector'],
        response: { 200: z.object({ items: z.array(exporterItem) }), 401: errorBody },
      },
    },
    async () => {
      const snapshot = await deps.collector.snapshot();
      const items: ExporterItem[] = snapshot.streams
        .map(({ sequence_gaps: _g, ...s }) => ({ ...s, ...lossFigures(s) }))
        .sort((a, b) => a.address.localeCompare(b.address) || a.version - b.version || a.domain - b.domain);
      return { items };
    },
  );
}
