import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { FastifyInstance } from 'fastify';

type Operation = { responses?: Record<string, { content?: Record<string, { schema?: unknown }> }> };
type Doc = { paths: Record<string, Record<string, Operation>> };

/**
 * The API's OpenAPI document, validated against the OpenAPI 3.1 schema, and a checker of answers
 * against the response schemas it declares (JSON Schema 2020-12, references resolved).
 */
export async function openApiOf(app: FastifyInstance): Promise<{
  valid: boolean;
  errors: unknown;
  doc: Doc;
  /** Problems of one answer against the document ([] when it matches). */
  check(method: string, url: string, status: number, body: unknown): string[];
}> {
  const response = await app.inject({ method: 'GET', url: '/openapi.json' });
  const raw = JSON.parse(response.body) as unknown;
  const validator = new Validator();
  const result = await validator.validate(raw as Parameters<Validator['validate']>[0]);
  const doc = (result.valid ? validator.resolveRefs() : raw) as Doc;
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  (addFormats as unknown as (a: Ajv2020) => void)(ajv);
  const templates = Object.keys(doc.paths).map((path) => ({
    path,
    pattern: new RegExp(`^${path.replace(/\{[^}]+\}/g, '[^/]+')}$`),
  }));
  return {
    valid: result.valid,
    errors: result.errors,
    doc,
    check(method, url, status, body) {
      const path = url.split('?')[0]!;
      const template = templates.find((t) => t.pattern.test(path));
      if (!template) return [`${method} ${path}: not in the document`];
      const operation = doc.paths[template.path]![method.toLowerCase()];
      if (!operation) return [`${method} ${template.path}: method not in the document`];
      const declared = operation.responses?.[String(status)];
      if (!declared) return [`${method} ${template.path}: status ${status} not declared`];
      const content = declared.content ?? {};
      const schema = content['application/json']?.schema;
      if (schema === undefined)
        return typeof body === 'string' ? [] : [`${method} ${template.path}: no JSON schema`];
      const validate = ajv.compile(schema as object);
      return validate(body)
        ? []
        : (validate.errors ?? []).map(
            (e) => `${method} ${template.path} ${status}: ${e.instancePath} ${e.message}`,
          );
    },
  };
}
