import { z } from 'zod';
import { type AllowlistStore, allowlistRuleSchema } from '../findings/allowlist.js';
import type { FindingStore } from '../findings/store.js';
import { describeRule } from './findings.js';
import { ApiError, commonErrors, errorBody, type ZodApp } from './types.js';

export interface AllowlistDeps {
  readonly allowlist: AllowlistStore;
  readonly findings: FindingStore;
}

/** The analyst allowlist rules (made by suppressing findings): list them, remove one. */
export function allowlistRoutes(app: ZodApp, deps: AllowlistDeps): void {
  app.get(
    '/api/v1/allowlist',
    {
      schema: {
        summary: 'Allowlist rules made by suppressing findings',
        tags: ['findings'],
        querystring: z.strictObject({
          active: z
            .enum(['true', 'false'])
            .default('false')
            .transform((v) => v === 'true')
            .describe('true: leave out expired rules'),
        }),
        response: { 200: z.object({ items: z.array(allowlistRuleSchema) }), ...commonErrors },
      },
    },
    async (request) => ({ items: await deps.allowlist.list({ activeOnly: request.query.active }) }),
  );

  app.delete(
    '/api/v1/allowlist/:id',
    {
      schema: {
        summary: 'Remove an allowlist rule (detectors report that activity again from their next run)',
        tags: ['findings'],
        params: z.strictObject({ id: z.uuid({ message: 'expected a rule id' }) }),
        response: { 200: allowlistRuleSchema, 404: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      const actor = request.principal?.name ?? 'anonymous';
      const rule = await deps.allowlist.remove(request.params.id, actor);
      if (!rule) throw new ApiError(404, 'not_found', `no allowlist rule ${request.params.id}`);
      if (rule.finding_id) {
        await deps.findings.recordEvent(rule.finding_id, {
          actor,
          action: 'allowlist_rule_removed',
          comment: describeRule(rule),
          ruleId: rule.id,
        });
      }
      return rule;
    },
  );
}
