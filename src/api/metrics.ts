import { Counter, Histogram, type Registry } from 'prom-client';

export interface ApiMetrics {
  observe(route: string, method: string, status: number, seconds: number): void;
}

/**
 * The API's metrics: requests by route template (never the raw URL: bounded labels), method and
 * status, and their latency by route. Looked up first, so that several apps built on one registry
 * (tests, a rebuilt app) share the series instead of failing on a duplicate name.
 */
export function registerApiMetrics(registry: Registry): ApiMetrics {
  const requests =
    (registry.getSingleMetric('flowsentry_api_requests_total') as Counter | undefined) ??
    new Counter({
      name: 'flowsentry_api_requests_total',
      help: 'API requests answered, by route template, method and status code.',
      labelNames: ['route', 'method', 'status'],
      registers: [registry],
    });
  const duration =
    (registry.getSingleMetric('flowsentry_api_request_duration_seconds') as Histogram | undefined) ??
    new Histogram({
      name: 'flowsentry_api_request_duration_seconds',
      help: 'Time to answer an API request, by route template and method.',
      labelNames: ['route', 'method'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    });
  return {
    observe(route, method, status, seconds) {
      requests.inc({ route, method, status: String(status) });
      duration.observe({ route, method }, seconds);
    },
  };
}
