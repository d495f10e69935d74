import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { Registry } from 'prom-client';
import { type ApiDeps, type ApiSettings, buildApp } from '../../src/api/app.js';
import type { CollectorView } from '../../src/api/system.js';
import type { CollectorSnapshot } from '../../src/collector/collector.js';
import { configSchema } from '../../src/config/schema.js';
import type { Decoder, DecoderCounters } from '../../src/decoder/index.js';
import type { Detection } from '../../src/detect/index.js';
import { DetectionHarness, trafficBase } from './detection.js';
import { TrafficBuilder } from './packets.js';

const S = 1_000_000;

/** API settings: the defaults with these changes (validated like the configuration file). */
export function apiSettings(changes: Record<string, unknown> = {}): ApiSettings {
  return configSchema.shape.api.parse(changes);
}

/**
 * The collector as the API sees it, over the real decoders that read the fixture's exports: their
 * streams, templates and counters, with one listener.
 */
export function collectorOf(decoders: readonly Decoder[]): CollectorView {
  const listeners = [
    { listen: '127.0.0.1:2055', address: '127.0.0.1', port: 2055, receiveBufferBytes: 4_194_304 },
  ];
  return {
    listeners,
    async snapshot(withTemplates = false): Promise<CollectorSnapshot> {
      const counters = {} as DecoderCounters;
      for (const d of decoders) {
        for (const [k, v] of Object.entries(d.counters)) {
          counters[k as keyof DecoderCounters] = (counters[k as keyof DecoderCounters] ?? 0) + v;
        }
      }
      const size = { exporters: 0, streams: 0, templates: 0, layouts: 0, pendingBytes: 0, compiled: 0 };
      for (const d of decoders)
        for (const [k, v] of Object.entries(d.size)) size[k as keyof typeof size] += v;
      return {
        receiveThread: { tid: 4242, requestedNice: -10, nice: 0, error: 'EACCES: permission denied' },
        threads: { receive: { tid: 4242, nice: 0 }, decoders: [{ tid: 4243, nice: 10 }] },
        listeners: listeners.map((l) => ({
          ...l,
          packets: 10,
          bytes: 14_000,
          queue_dropped_packets: 0,
          queue_dropped_bytes: 0,
          kernel: { drops: 0, rxQueueBytes: 0 },
        })),
        queueBytes: 0,
        queueCapacityBytes: 64 * 1024 * 1024,
        decoder: counters,
        streams: decoders.flatMap((d) => d.streams()),
        templates: withTemplates ? decoders.flatMap((d) => d.templates()) : null,
        state: size,
        spool: { files: 1, records: 10, droppedRecords: 0, pendingRows: 0 },
      };
    },
  };
}

/** Addresses of the fixture's traffic. */
export const HOSTS = {
  scanner: '203.0.113.9',
  victim: '10.2.0.1',
  insider: '10.1.1.5',
  server: '10.2.0.2',
  web: '192.0.2.80',
  client: '10.1.1.10',
  resolver: '192.0.2.53',
  v6client: '2001:db8::10',
  v6server: '2001:db8::80',
  exporter: '192.0.2.250',
  exporter2: '198.51.100.7',
} as const;

/**
 * One store with real traffic exported by softflowd and decoded by the collector's decoder, and the
 * findings the detection engine's backfill made of it: an external port scan (T1595.001), an
 * internal one (T1046), ordinary TCP, UDP, ICMP and IPv6 traffic from two exporters.
 */
export class ApiFixture {
  readonly decoders: Decoder[] = [];
  detection!: Detection;
  /** Traffic times: first and last packet (epoch ms). */
  firstMs = 0;
  lastMs = 0;
  records = 0;
  private readonly apps: FastifyInstance[] = [];

  private constructor(readonly h: DetectionHarness) {}

  static async open(): Promise<ApiFixture> {
    const f = new ApiFixture(await DetectionHarness.open());
    await f.loadTraffic();
    return f;
  }

  get store() {
    return this.h.store;
  }

  private async loadTraffic(): Promise<void> {
    const t0 = trafficBase(120);
    const b = new TrafficBuilder();
    for (let i = 0; i < 60; i++)
      b.synProbe(t0 + i * S, HOSTS.scanner, HOSTS.victim, 40_000, 1 + i, i === 21 ? 'synack' : 'rst');
    for (let i = 0; i < 40; i++)
      b.synProbe(t0 + 2 * S + i * S, HOSTS.insider, HOSTS.server, 41_000, 100 + i, 'none');
    for (let i = 0; i < 6; i++) {
      b.tcpSession({
        t: t0 + 5 * S + i * 7 * S,
        client: HOSTS.client,
        server: HOSTS.web,
        sport: 50_000 + i,
        dport: 443,
        exchanges: [{ up: 600, down: 20_000 }],
      });
      b.udpExchange(t0 + 6 * S + i * 5 * S, HOSTS.client, HOSTS.resolver, 53_000 + i, 53, 40, 120);
    }
    b.echo(t0 + 10 * S, HOSTS.client, HOSTS.web, 7, 1, 56);
    b.tcpSession({
      t: t0 + 20 * S,
      client: HOSTS.v6client,
      server: HOSTS.v6server,
      sport: 50_100,
      dport: 443,
      exchanges: [{ up: 300, down: 5_000 }],
    });
    const first = await this.h.load(b, { exporter: HOSTS.exporter });
    // A second exporter with a little traffic of its own, in NetFlow v9.
    const b2 = new TrafficBuilder();
    for (let i = 0; i < 3; i++)
      b2.udpExchange(t0 + 30 * S + i * S, '10.5.0.1', HOSTS.resolver, 54_000 + i, 53, 50, 200);
    const second = await this.h.load(b2, { exporter: HOSTS.exporter2, version: 9 });
    this.decoders.push(first.decoder, second.decoder);
    this.firstMs = Math.min(first.firstMs, second.firstMs);
    this.lastMs = Math.max(first.lastMs, second.lastMs);
    this.records = first.records + second.records;
    this.detection = this.h.detection();
    await this.detection.engine.backfill({ from: this.firstMs - 60_000, to: this.lastMs + 60_000 });
  }

  /** An ISO range around all the fixture's traffic. */
  range(padMs = 3_600_000): { from: string; to: string } {
    return {
      from: new Date(this.firstMs - padMs).toISOString(),
      to: new Date(this.lastMs + padMs).toISOString(),
    };
  }

  async app(api: Record<string, unknown> = {}, extra: Partial<ApiDeps> = {}): Promise<FastifyInstance> {
    const app = await buildApp({
      store: this.h.store,
      collector: collectorOf(this.decoders),
      metrics: new Registry(),
      log: this.h.log,
      version: '0.0.0-test',
      storage: () => ({
        writer: {
          queuedFiles: 0,
          queuedRows: 0,
          queuedBytes: 0,
          insertedRows: this.records,
          insertedBatches: 2,
          insertFailures: 0,
          rejectedFiles: 0,
          rejectedRows: 0,
          lastInsertMs: Date.now(),
          lastInsertSeconds: 0.01,
          lastError: null,
        },
        spoolBytes: 0,
      }),
      detection: this.detection,
      api: apiSettings({ rateLimit: { max: 100_000 }, ...api }),
      ...extra,
    });
    await app.ready();
    this.apps.push(app);
    return app;
  }

  async close(): Promise<void> {
    await Promise.all(this.apps.map((a) => a.close()));
    await this.h.close();
  }
}

/** The JSON body of an inject response. */
export function json<T = Record<string, unknown>>(r: LightMyRequestResponse): T {
  return JSON.parse(r.body) as T;
}

/** A query string from an object (values encoded). */
export function qs(params: Record<string, string | number | undefined>): string {
  const entries = Object.entries(params).filter(([, v]) => v !== undefined) as Array<
    [string, string | number]
  >;
  return entries.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`).join('&');
}
