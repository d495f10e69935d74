import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';

/**
 * The process's Prometheus registry, with Node's default metrics as flowsentry_process_*. Each
 * component registers its own metrics on it, beside its code (collector/metrics.ts,
 * storage/metrics.ts, detect/metrics.ts, siem/metrics.ts, api/metrics.ts); main.ts only hands the
 * registry round. Names follow flowsentry_<component>_<noun>_<unit>, `_total` on counters, seconds
 * and bytes as base units, small fixed label sets.
 */
export function createMetricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'flowsentry_process_' });
  return registry;
}

type Labels = Record<string, string>;
type Sample = readonly [labels: Labels, value: number];

/**
 * A counter whose value is counted elsewhere (another thread or process, a stats object): set to
 * the source's absolute values at every scrape (reset, then inc), so it only moves forward as long
 * as the source does.
 */
export function observedCounter(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly string[],
  read: () => Iterable<Sample> | Promise<Iterable<Sample>>,
): Counter {
  return new Counter({
    name,
    help,
    labelNames: [...labelNames],
    registers: [registry],
    async collect() {
      const samples = await read();
      this.reset();
      for (const [labels, value] of samples) this.inc(labels, value);
    },
  });
}

/** A gauge read from its source at every scrape (the previous label sets are cleared first). */
export function observedGauge(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly string[],
  read: () => Iterable<Sample> | Promise<Iterable<Sample>>,
): Gauge {
  return new Gauge({
    name,
    help,
    labelNames: [...labelNames],
    registers: [registry],
    async collect() {
      const samples = await read();
      this.reset();
      for (const [labels, value] of samples) this.set(labels, value);
    },
  });
}

/** One unlabelled sample. */
export const single = (value: number): Sample[] => [[{}, value]];
