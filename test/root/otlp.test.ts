// A spans for real: the collector's OTLP/HTTP receiver on the lab bridge takes the
// spans that svca's OpenTelemetry JS SDK exports (protobuf, gzip, /v1/traces) while
// the same collector traces svcb with eBPF. Ground truth: svca's and svcb's own
// request logs, the traceparent svcb received, and what curl sent. A second exporter
// (the SDK's OTLP/HTTP JSON exporter, in this test process) covers JSON, gzip and
// DeepFlow's path /api/v1/otel/trace with the old semantic conventions.

import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spanBodies, startCollector, until, type CollectorRun } from '../support/collector-run.ts';
import {
  COLLECTOR_BIN,
  curl,
  isRoot,
  LAB_OTLP_LISTEN,
  labDown,
  labUp,
  readUpstreamLog,
  type Lab,
} from '../support/lab.ts';

type Row = Record<string, unknown>;

const hex = (n: number): string =>
  Array.from({ length: n }, () => Math.floor(Math.random() * 16).toString(16)).join('');

describe.skipIf(!isRoot)('OTLP receiver with the lab svca instrumented by the OpenTelemetry SDK (root)', () => {
  let lab: Lab;
  let run: CollectorRun;
  const tag = `otlp-${Date.now()}`;
  interface Case {
    path: string;
    xrid: string;
    status: number;
    chain: boolean;
    traceparent?: { traceId: string; parentId: string };
  }
  const cases: Case[] = [];

  beforeAll(async () => {
    if (!existsSync(COLLECTOR_BIN)) throw new Error(`${COLLECTOR_BIN} is missing: run npm run build:collector`);
    lab = labUp();
    run = startCollector(['--process', lab.LAB_SVCB_PID, '--otlp-listen', LAB_OTLP_LISTEN, '--duration', '90s']);
    await until('hello', () => run.frames.some((f) => f.type === 'hello'));
    await new Promise((r) => setTimeout(r, 300));
  });
  afterAll(() => {
    run?.child.kill('SIGTERM');
    labDown();
  });

  it('says in hello where it receives OTLP', () => {
    const hello = run.frames.find((f) => f.type === 'hello')!.body;
    expect(hello['otlp']).toEqual({ listen: LAB_OTLP_LISTEN, paths: ['/v1/traces', '/api/v1/otel/trace'] });
    expect((hello['capabilities'] as Row)['otel']).toBe(true);
  });

  it('turns every request svca handled into one s-app span, and each call to svcb into a c-app span', async () => {
    const N = 30;
    for (let i = 0; i < N; i++) {
      const kind = i % 3;
      const c: Case =
        kind === 2
          ? { path: `/status/${i % 2 ? 404 : 503}`, xrid: `${tag}-${i}`, status: i % 2 ? 404 : 503, chain: false }
          : { path: `/chain/items/${i}?n=${i}`, xrid: `${tag}-${i}`, status: 200, chain: true };
      if (kind === 0) c.traceparent = { traceId: hex(32), parentId: hex(16) };
      const headers: Record<string, string> = { 'X-Request-ID': c.xrid };
      if (c.traceparent) headers['traceparent'] = `00-${c.traceparent.traceId}-${c.traceparent.parentId}-01`;
      expect(curl(lab, 'GET', c.path, headers).status, c.path).toBe(c.status);
      cases.push(c);
    }
    const ours = (s: Row): boolean => typeof s['x_request_id_0'] === 'string' && s['x_request_id_0'].startsWith(tag);
    const chains = cases.filter((c) => c.chain).length;
    const wanted = N + chains * 2; // s-app each, c-app and svcb's S span per chain
    await until('A and S spans', () => spanBodies(run).filter(ours).length >= wanted, 15_000).catch(() => undefined);

    const all = spanBodies(run).filter(ours);
    const svcaLog = readUpstreamLog(lab.LAB_SVCA_LOG).filter((l) => l.x_request_id?.startsWith(tag));
    const svcbLog = readUpstreamLog(lab.LAB_SVCB_LOG).filter((l) => l.x_request_id?.startsWith(tag));
    // svca's own count of the requests it handled.
    expect(svcaLog).toHaveLength(N);
    expect(svcbLog).toHaveLength(chains);
    const sApp = all.filter((s) => s['signal_source'] === 'otel' && s['observation_point'] === 's-app');
    const cApp = all.filter((s) => s['signal_source'] === 'otel' && s['observation_point'] === 'c-app');
    const sSvcb = all.filter((s) => s['signal_source'] === 'ebpf' && s['observation_point'] === 's-p');
    expect(sApp).toHaveLength(svcaLog.length);
    expect(cApp).toHaveLength(chains);
    expect(sSvcb).toHaveLength(chains);

    for (const c of cases) {
      const line = svcaLog.find((l) => l.x_request_id === c.xrid)!;
      const s = sApp.filter((x) => x['x_request_id_0'] === c.xrid);
      expect(s, c.xrid).toHaveLength(1);
      const a = s[0]!;
      expect(a).toMatchObject({
        app_service: 'svca',
        pid: Number(lab.LAB_SVCA_PID),
        process_name: 'node',
        l7_protocol: 'HTTP',
        request_type: 'GET',
        request_resource: line.url,
        endpoint: c.path.split('?')[0],
        response_code: line.status,
        response_status: c.status >= 500 ? 'server_error' : c.status >= 400 ? 'client_error' : 'ok',
        server_ip: '198.18.0.30',
        server_port: 8080,
        client_ip: '198.18.0.20', // the gateway
        x_request_id_1: c.xrid,
      });
      expect(a['trace_id']).toMatch(/^[0-9a-f]{32}$/);
      expect(a['span_id']).toMatch(/^[0-9a-f]{16}$/);
      if (c.traceparent) {
        // The client's traceparent went through the gateway: svca continued that trace.
        expect(a['trace_id']).toBe(c.traceparent.traceId);
        expect(a['parent_span_id']).toBe(c.traceparent.parentId);
        expect(line.traceparent).toBe(`00-${c.traceparent.traceId}-${c.traceparent.parentId}-01`);
      } else {
        expect(a['parent_span_id']).toBeNull();
      }
      if (!c.chain) continue;
      const cl = cApp.find((x) => x['x_request_id_0'] === c.xrid)!;
      expect(cl, `c-app of ${c.xrid}`).toBeDefined();
      expect(cl).toMatchObject({
        trace_id: a['trace_id'],
        parent_span_id: a['span_id'],
        server_ip: '198.18.0.40',
        server_port: 8080,
        request_resource: `/api/items/${c.path.split('/')[3]}`,
        response_code: 200,
      });
      expect(cl['start_time_us']).toBeGreaterThanOrEqual(a['start_time_us'] as number);
      expect(cl['end_time_us']).toBeLessThanOrEqual((a['end_time_us'] as number) + 1000);
      // svcb's eBPF S span saw the traceparent the SDK injected: svca's client span.
      const b = sSvcb.find((x) => x['x_request_id_0'] === c.xrid)!;
      expect(b, `svcb S span of ${c.xrid}`).toBeDefined();
      expect(b['pid']).toBe(Number(lab.LAB_SVCB_PID));
      expect(b['trace_id']).toBe(cl['trace_id']);
      expect(b['span_id']).toBe(cl['span_id']);
      const bl = svcbLog.find((l) => l.x_request_id === c.xrid)!;
      expect(bl.traceparent).toBe(`00-${cl['trace_id'] as string}-${cl['span_id'] as string}-01`);
    }
  });

  it('takes OTLP/JSON with gzip on DeepFlow path, and plain JSON on /v1/traces, from the SDK JSON exporter', async () => {
    const base = `http://${LAB_OTLP_LISTEN}`;
    const provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'legacy-billing', 'service.instance.id': 'billing-7' }),
      spanProcessors: [
        new SimpleSpanProcessor({
          exporter: new JsonExporter({ url: `${base}/api/v1/otel/trace`, compression: 'gzip' as never }),
        }),
        new SimpleSpanProcessor({ exporter: new JsonExporter({ url: `${base}/v1/traces` }) }),
      ],
    });
    const tracer = provider.getTracer('tapdeck-otlp-test');
    // Old semantic conventions, as older SDKs and agents still send them.
    const server = tracer.startSpan('POST /invoices', {
      kind: SpanKind.SERVER,
      attributes: {
        'http.method': 'POST',
        'http.target': `/invoices?tag=${tag}`,
        'http.host': 'billing.internal:9000',
        'http.status_code': 502,
        'net.peer.ip': '198.18.0.20',
        'net.peer.port': 41000,
        'http.request.header.x_request_id': [`${tag}-json`],
        'http.request.header.authorization': ['Bearer do-not-store'],
      },
    });
    const db = tracer.startSpan(
      'SELECT invoices',
      {
        kind: SpanKind.CLIENT,
        attributes: {
          'db.system': 'postgresql',
          'db.statement': 'SELECT * FROM invoices WHERE id = $1',
          'db.operation': 'SELECT',
          'db.name': 'billing',
        },
      },
      trace.setSpan(context.active(), server),
    );
    db.setStatus({ code: SpanStatusCode.ERROR, message: 'canceling statement due to statement timeout' });
    db.end();
    server.end();
    await provider.forceFlush();
    await provider.shutdown();

    const sid = server.spanContext();
    const did = db.spanContext();
    await until('the JSON spans', () => spanBodies(run).filter((s) => s['trace_id'] === sid.traceId).length >= 4);
    const got = spanBodies(run).filter((s) => s['trace_id'] === sid.traceId);
    expect(got).toHaveLength(4); // two spans, by two exporters
    const srv = got.filter((s) => s['span_id'] === sid.spanId);
    const cli = got.filter((s) => s['span_id'] === did.spanId);
    expect(srv).toHaveLength(2);
    expect(srv[0]).toEqual(srv[1]); // gzip JSON on DeepFlow's path = plain JSON on /v1/traces
    expect(cli[0]).toEqual(cli[1]);
    expect(srv[0]).toMatchObject({
      signal_source: 'otel',
      observation_point: 's-app',
      app_service: 'legacy-billing',
      app_instance: 'billing-7',
      l7_protocol: 'HTTP',
      request_type: 'POST',
      request_resource: `/invoices?tag=${tag}`,
      endpoint: '/invoices',
      request_domain: 'billing.internal:9000',
      response_code: 502,
      response_status: 'server_error',
      client_ip: '198.18.0.20',
      client_port: 41000,
      x_request_id_0: `${tag}-json`,
      parent_span_id: null,
    });
    expect((srv[0]!['attributes'] as Row)['http.request.header.authorization']).toBe('[redacted]');
    expect(JSON.stringify(srv[0])).not.toContain('do-not-store');
    expect(cli[0]).toMatchObject({
      observation_point: 'c-app',
      parent_span_id: sid.spanId,
      l7_protocol: 'PostgreSQL',
      request_type: 'SELECT',
      request_resource: 'SELECT * FROM invoices WHERE id = $1',
      request_domain: 'billing',
      response_status: 'server_error',
      response_exception: 'canceling statement due to statement timeout',
    });
  });

  it('refuses bad exports with the right status, counts them, and keeps everything else', async () => {
    const base = `http://${LAB_OTLP_LISTEN}`;
    const bad = await fetch(`${base}/v1/traces`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf' },
      body: new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]),
    });
    expect(bad.status).toBe(400);
    expect(await fetch(`${base}/v1/metrics`, { method: 'POST', body: '{}' }).then((r) => r.status)).toBe(404);
    expect(
      await fetch(`${base}/v1/traces`, { method: 'POST', headers: { 'content-type': 'text/xml' }, body: '<x/>' }).then(
        (r) => r.status,
      ),
    ).toBe(415);
    const spansBefore = spanBodies(run).length;

    run.child.stdin.end();
    expect(await run.exited, run.stderr).toBe(0);
    const fin = run.frames.find((f) => f.type === 'stats' && f.body['final'] === true)!.body;
    const otlp = fin['otlp'] as { rejected: Record<string, number>; spans_received: number; exports_accepted: number };
    expect(otlp.rejected).toMatchObject({
      bad_body: 1,
      not_found: 1,
      unsupported_media_type: 1,
      busy: 0,
      too_large: 0,
    });
    expect((fin['drops'] as Row)['otlp_rejected_exports']).toBe(3);
    // Every span the receiver took was written as a frame.
    const aSpans = spanBodies(run).filter((s) => s['signal_source'] === 'otel').length;
    expect(otlp.spans_received).toBe(aSpans);
    expect(spanBodies(run).length).toBe(spansBefore);
    expect(run.frames.at(-1)?.type).toBe('bye');
  });
});
