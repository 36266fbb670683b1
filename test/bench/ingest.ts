// Benchmark: collector stream → SQLite on this machine. Encodes N realistic span frames
// (as the collector writes them), then decodes them with the real FrameDecoder and
// stores them through the real Store (worker thread, batched transactions), timing the
// whole path. Prints spans/s and the ratio to the DESIGN.md budget (200,000 spans/s),
// and CPU time next to wall time (the whole process, and the main thread that decodes;
// the rest is mostly the store worker): on a shared machine, wall time minus CPU time
// is the contention.
//
//   node test/bench/ingest.ts [--spans N]

import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Span } from '../../main/api/records.ts';
import { encodeFrame, FrameDecoder } from '../../main/ingest/frames.ts';
import { Store } from '../../main/store/store.ts';

const BUDGET = 200_000;
const { values } = parseArgs({ options: { spans: { type: 'string', default: '500000' } } });
const N = Number(values.spans);

function span(i: number): Omit<Span, 'node'> {
  const t = 1_763_700_000_000_000 + i * 50;
  const inbound = i % 2 === 0;
  return {
    signal_source: 'ebpf',
    observation_point: inbound ? 's-p' : 'c-p',
    start_time_us: t,
    end_time_us: t + 1200,
    duration_us: 1200,
    pid: 4211,
    tid: 4211,
    process_name: 'nginx',
    container_id: null,
    netns: 4026531840,
    interface: null,
    client_ip: inbound ? '198.18.0.10' : '198.18.0.20',
    client_port: 40000 + (i % 20000),
    server_ip: inbound ? '198.18.0.20' : '198.18.0.30',
    server_port: inbound ? 80 : 8080,
    l4_protocol: 'TCP',
    l7_protocol: 'HTTP',
    version: '1.1',
    request_type: i % 5 ? 'GET' : 'POST',
    request_domain: 'api.shop.example',
    request_resource: `/api/items?id=${i}`,
    endpoint: '/api/items',
    response_code: i % 50 ? 200 : 502,
    response_status: i % 50 ? 'ok' : 'server_error',
    response_exception: i % 50 ? null : 'Bad Gateway',
    request_length: 180,
    response_length: 950,
    x_request_id_0: `load-bench-${i >> 1}`,
    x_request_id_1: `load-bench-${i >> 1}`,
    trace_id: null,
    span_id: null,
    parent_span_id: null,
    syscall_trace_id_request: 1_000_000 + (i >> 1),
    syscall_trace_id_response: 2_000_000 + (i >> 1),
    req_tcp_seq: (i * 7919) >>> 0,
    resp_tcp_seq: (i * 104729) >>> 0,
    app_service: null,
    app_instance: null,
    attributes: null,
  };
}

// The stream as it arrives from SSH: 64 KiB chunks.
const frames = Buffer.concat(Array.from({ length: N }, (_, i) => encodeFrame('span', span(i))));
const chunks: Buffer[] = [];
for (let o = 0; o < frames.length; o += 65536) chunks.push(frames.subarray(o, o + 65536));

const dir = mkdtempSync(join(tmpdir(), 'td-bench-'));
const store = await Store.open(join(dir, 'bench.sqlite'));
const id = await store.createCapture({ target: 'bench', startedAtUs: Date.now() * 1000 });

const rss0 = process.memoryUsage().rss;
const cpu0 = process.cpuUsage();
const main0 = process.threadCpuUsage();
const t0 = performance.now();
const decoder = new FrameDecoder();
let batch: Span[] = [];
let n = 0;
for (const c of chunks) {
  for (const f of decoder.push(c)) {
    const s = f.body as unknown as Span;
    s.node = 'gw-1';
    batch.push(s);
    if (batch.length >= 2000) {
      store.appendSpans(id, batch);
      n += batch.length;
      batch = [];
    }
  }
  // let the worker's replies in, as the event loop would between SSH chunks
  if (n % 20000 === 0) await new Promise((r) => setImmediate(r));
}
store.appendSpans(id, batch);
n += batch.length;
const tDecoded = performance.now();
await store.flush();
const t1 = performance.now();
const cpu = process.cpuUsage(cpu0);
const mainCpu = process.threadCpuUsage(main0);
await store.close();
// Every span must be in the file: count the rows directly.
const check = new Database(join(dir, 'bench.sqlite'), { readonly: true });
const stored = (check.prepare(`SELECT count(*) AS n FROM spans WHERE capture_id = ?`).get(id) as { n: number }).n;
check.close();
rmSync(dir, { recursive: true, force: true });

const secs = (t1 - t0) / 1000;
const rate = n / secs;
console.log(
  `ingest: ${n} spans (${(frames.length / 1048576).toFixed(1)} MiB of frames) decoded in ${((tDecoded - t0) / 1000).toFixed(2)} s, stored in ${secs.toFixed(2)} s`,
);
console.log(
  `ingest: ${Math.round(rate).toLocaleString('en-US')} spans/s end to end; budget ${BUDGET.toLocaleString('en-US')} spans/s; ratio ${(rate / BUDGET).toFixed(2)}x`,
);
const sec = (u: { user: number; system: number }): string =>
  `${((u.user + u.system) / 1e6).toFixed(2)} s (user ${(u.user / 1e6).toFixed(2)}, sys ${(u.system / 1e6).toFixed(2)})`;
console.log(
  `ingest: CPU ${sec(cpu)} in ${secs.toFixed(2)} s wall, of it main thread ${sec(mainCpu)}; load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')} on ${cpus().length} CPUs`,
);
console.log(
  `ingest: rows in file ${stored}, main-thread RSS growth ${((process.memoryUsage().rss - rss0) / 1048576).toFixed(0)} MiB`,
);
if (stored !== n) {
  console.error(`ingest: LOST ROWS: stored ${stored} of ${n}`);
  process.exitCode = 1;
}
