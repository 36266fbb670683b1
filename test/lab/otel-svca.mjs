// The OpenTelemetry SDK for the lab's svca, loaded before upstream.mjs with
// `node --import test/lab/otel-svca.mjs` (SVCA_NODE_FLAGS in test/lab/lab).
//
// The OpenTelemetry JS SDK (sdk-trace, context-async-hooks, instrumentation-http)
// makes a server span (s-app) of every request svca handles and a client span
// (c-app) of its call to svcb, and injects a W3C traceparent into that call, so the
// eBPF S spans of svcb carry svca's trace and span ids. Spans are exported by
// OTLP/HTTP protobuf, gzip-compressed, to the collector's receiver, in batches at
// most 200 ms old. Everything comes from node_modules: nothing is fetched at run time.
//
// Environment (all optional):
//   TDLAB_OTLP_URL          where to export (default http://198.18.0.1:4318/v1/traces:
//                           the lab bridge, where a collector in the root namespace
//                           listens with --otlp-listen 198.18.0.1:4318)
//   TDLAB_OTLP_COMPRESSION  gzip (default) or none
//   TDLAB_OTEL_SERVICE      service.name (default svca)
//   TDLAB_OTEL_DEBUG=1      the SDK's own diagnostics on stderr (svca.out in the lab)
// When nothing listens there the exports fail quietly and svca serves as before.

import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { context, diag, DiagConsoleLogger, DiagLogLevel, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';

const url = process.env.TDLAB_OTLP_URL || 'http://198.18.0.1:4318/v1/traces';
const compression = process.env.TDLAB_OTLP_COMPRESSION === 'none' ? 'none' : 'gzip';
const serviceName = process.env.TDLAB_OTEL_SERVICE || 'svca';

if (process.env.TDLAB_OTEL_DEBUG === '1') diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.DEBUG);

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());

const provider = new TracerProvider({
  // Every request is recorded, so svca's own request log is the ground truth.
  sampler: new AlwaysOnSampler(),
  resource: resourceFromAttributes({
    'service.name': serviceName,
    'service.instance.id': `${serviceName}-${process.pid}`,
    'host.name': hostname(),
    'process.pid': process.pid,
    'process.executable.name': 'node',
  }),
  spanProcessors: [
    new BatchSpanProcessor({
      exporter: new OTLPTraceExporter({ url, compression, timeoutMillis: 5000 }),
      scheduledDelayMillis: 200,
      maxExportBatchSize: 512,
      maxQueueSize: 8192,
    }),
  ],
});
trace.setGlobalTracerProvider(provider);

registerInstrumentations({
  instrumentations: [
    new HttpInstrumentation({
      headersToSpanAttributes: {
        server: { requestHeaders: ['x-request-id'], responseHeaders: ['x-request-id'] },
        client: { requestHeaders: ['x-request-id'], responseHeaders: ['x-request-id'] },
      },
      // The stable conventions give a server span no local socket address; add it
      // (network.local.*), so the span says which socket served the request.
      startIncomingSpanHook: (req) => ({
        'network.local.address': req.socket?.localAddress?.replace(/^::ffff:/, '') ?? '',
        'network.local.port': req.socket?.localPort ?? 0,
      }),
      // The exporter's own requests to the collector are not application traffic.
      ignoreOutgoingRequestHook: (req) => String(req.path ?? '').startsWith(new URL(url).pathname),
    }),
  ],
});

// upstream.mjs imports node:http as ESM; its default export is the CommonJS module
// object, which the instrumentation patches when it is first required.
createRequire(import.meta.url)('node:http');

const flush = () => provider.forceFlush().catch(() => undefined);
process.once('beforeExit', flush);
