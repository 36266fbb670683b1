// Benchmark: the collector's OTLP/HTTP receiver on this machine (root: the collector
// runs for real, with `--signals a`). Builds one export of 512 realistic HTTP server
// spans with the OpenTelemetry JS SDK's own serializers (protobuf, JSON), posts it
// over keep-alive connections for a few seconds per encoding, and counts the span
// frames the collector writes. Prints spans/s received and turned into frames, the
// collector's CPU per span and cores used, and the ratio to the DESIGN.md end-to-end
// budget (200,000 spans/s; the receiver is one stage of that path).
//
//   node test/bench/otlp.ts [--seconds 6] [--connections 4]
//
// Load generator, collector and this reader share the machine's cores: the figures
// are a lower bound of what the receiver alone sustains.

import { spawn } from 'node:child_process';
import http from 'node:http';
import { gzipSync } from 'node:zlib';
import { parseArgs } from 'node:util';
import { SpanKind } from '@opentelemetry/api';
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { COLLECTOR_BIN } from '../support/lab.ts';

const BUDGET = 200_000;
const BATCH = 512;
const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '6' }, connections: { type: 'string', default: '4' } },
});
const SECONDS = Number(values.seconds);
const CONNS = Number(values.connections);

if (process.getuid?.() !== 0) {
  console.error('bench/otlp: run it as root (the collector loads its BPF programs even with --signals a).');
  process.exit(2);
}

// One export request of BATCH spans, as instrumentation-http makes them.
const memory = new InMemorySpanExporter();
const provider = new TracerProvider({
  resource: resourceFromAttributes({
    'service.name': 'checkout',
    'service.instance.id': 'checkout-7f9c',
    'host.name': 'node-3',
    'process.pid': 4242,
  }),
  spanProcessors: [new SimpleSpanProcessor({ exporter: memory })],
});
const tracer = provider.getTracer('@opentelemetry/instrumentation-http');
for (let i = 0; i < BATCH; i++) {
  const s = tracer.startSpan(`GET /api/items/:id`, {
    kind: i % 2 ? SpanKind.CLIENT : SpanKind.SERVER,
    attributes: {
      'http.request.method': 'GET',
      'url.path': `/api/items/${i}`,
      'url.query': `sort=desc&page=${i % 7}`,
      'url.scheme': 'http',
      'http.route': '/api/items/:id',
      'http.response.status_code': i % 50 === 0 ? 503 : 200,
      'server.address': 'checkout.internal',
      'server.port': 8080,
      'network.peer.address': '10.1.2.3',
      'network.peer.port': 40000 + i,
      'network.local.address': '10.1.2.9',
      'network.local.port': 8080,
      'network.protocol.version': '1.1',
      'user_agent.original': 'Mozilla/5.0 (X11; Linux x86_64) bench',
      'http.request.header.x-request-id': [`bench-${i}`],
    },
  });
  s.end();
}
const finished = memory.getFinishedSpans();
const bodies = {
  protobuf: Buffer.from(ProtobufTraceSerializer.serializeRequest(finished)!),
  json: Buffer.from(JsonTraceSerializer.serializeRequest(finished)!),
};

// The collector, reporting its receiver's address in hello.
const child = spawn(COLLECTOR_BIN, ['--signals', 'a', '--otlp-listen', '127.0.0.1:0', '--duration', '600s'], {
  stdio: ['pipe', 'pipe', 'inherit'],
});
let spanFrames = 0;
let listen = '';
const stats: { cpuUs: number; elapsedMs: number; rss: number }[] = [];
let pending: Buffer = Buffer.alloc(0);
child.stdout.on('data', (d: Buffer) => {
  pending = pending.length ? Buffer.concat([pending, d]) : d;
  let p = 0;
  // Count span frames from their headers; decode only hello and stats bodies.
  while (pending.length - p >= 8) {
    const type = pending[p + 3]!;
    const len = pending.readUInt32LE(p + 4);
    if (pending.length - p < 8 + len) break;
    if (type === 3) spanFrames++;
    else if (type === 1 || type === 5) {
      const body = JSON.parse(pending.subarray(p + 8, p + 8 + len).toString('utf8')) as Record<string, unknown>;
      if (type === 1) listen = (body['otlp'] as { listen?: string } | null)?.listen ?? '';
      else
        stats.push({
          cpuUs: (body['cpu_user_us'] as number) + (body['cpu_sys_us'] as number),
          elapsedMs: body['elapsed_ms'] as number,
          rss: body['rss_bytes'] as number,
        });
    }
    p += 8 + len;
  }
  pending = pending.subarray(p);
});

const until = async (cond: () => boolean, ms: number): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('bench/otlp: the collector did not start its receiver');
    await new Promise((r) => setTimeout(r, 20));
  }
};
await until(() => listen !== '', 15_000);
const [host, port] = [listen.slice(0, listen.lastIndexOf(':')), Number(listen.slice(listen.lastIndexOf(':') + 1))];

async function phase(name: string, body: Buffer, contentType: string, gzip: boolean): Promise<void> {
  const payload = gzip ? gzipSync(body) : body;
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNS });
  const framesBefore = spanFrames;
  const statsBefore = stats.length;
  const t0 = performance.now();
  const deadline = t0 + SECONDS * 1000;
  let exports = 0;
  let failures = 0;
  const post = (): Promise<number> =>
    new Promise((resolve) => {
      const req = http.request(
        {
          host,
          port,
          path: '/v1/traces',
          method: 'POST',
          agent,
          headers: {
            'content-type': contentType,
            'content-length': payload.length,
            ...(gzip ? { 'content-encoding': 'gzip' } : {}),
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', () => resolve(0));
      req.end(payload);
    });
  await Promise.all(
    Array.from({ length: CONNS }, async () => {
      while (performance.now() < deadline) {
        if ((await post()) === 200) exports++;
        else failures++;
      }
    }),
  );
  const sent = exports * BATCH;
  await until(() => spanFrames - framesBefore >= sent, 30_000).catch(() => undefined);
  const secs = (performance.now() - t0) / 1000;
  agent.destroy();
  // Let one more stats frame (every second) cover the end of the phase.
  const n = stats.length;
  await until(() => stats.length > n, 3000).catch(() => undefined);
  const a = stats[statsBefore - 1] ?? stats[0]!;
  const b = stats[stats.length - 1]!;
  const cpuSec = (b.cpuUs - a.cpuUs) / 1e6;
  const wallSec = (b.elapsedMs - a.elapsedMs) / 1000;
  const framed = spanFrames - framesBefore;
  const rate = framed / secs;
  console.log(
    `${name.padEnd(16)} ${String(framed).padStart(9)} spans in ${secs.toFixed(2)} s = ${Math.round(rate).toLocaleString('en')} spans/s ` +
      `(${(rate / BUDGET).toFixed(2)}× the 200k/s end-to-end budget); ` +
      `collector CPU ${((cpuSec / framed) * 1e6).toFixed(2)} µs/span, ${(cpuSec / wallSec).toFixed(2)} cores; ` +
      `RSS ${(Math.max(...stats.slice(statsBefore).map((x) => x.rss)) / 1048576).toFixed(1)} MB (budget 50 MB); ` +
      `${exports} exports of ${payload.length} bytes, ${failures} refused`,
  );
}

console.log(
  `bench/otlp: ${BATCH} spans per export, ${CONNS} keep-alive connections, ${SECONDS} s per encoding, ${listen}`,
);
await phase('protobuf', bodies.protobuf, 'application/x-protobuf', false);
await phase('protobuf+gzip', bodies.protobuf, 'application/x-protobuf', true);
await phase('json', bodies.json, 'application/json', false);
await phase('json+gzip', bodies.json, 'application/json', true);
child.stdin.end();
await new Promise((r) => child.on('close', r));
