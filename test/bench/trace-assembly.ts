// Benchmark: trace assembly of a 1,000-span trace in a capture file of 10 million
// spans (DESIGN.md budget: 100 ms). Prints the median and p95 of assembly, cold (a new
// connection each run: empty SQLite page cache, statements prepared again; the OS page
// cache stays warm, it is shared with everything else on the machine) and warm (one
// connection, repeated), the ratio to the budget, and what the trace indexes of
// schema migration 2 buy (a lookup with and without its index) and cost (insert rate
// into a fresh file with and without them).
//
//   node test/bench/trace-assembly.ts [--spans 10000000] [--file /tmp/…] [--runs 20]
//
// The capture file is generated once and cached under /tmp (generation prints its
// time); delete it or pass --regenerate to build it again.

import Database from 'better-sqlite3';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SPAN_FIELDS, type Span } from '../../main/api/records.ts';
import { assembleTraceFrom, createCapture, insertSpans, openDb } from '../../main/store/db.ts';
import { MIGRATIONS, migrate } from '../../main/store/schema.ts';

const BUDGET_MS = 100;
const GENERATOR_VERSION = 1;
const { values } = parseArgs({
  options: {
    spans: { type: 'string', default: '10000000' },
    file: { type: 'string' },
    runs: { type: 'string', default: '20' },
    regenerate: { type: 'boolean', default: false },
  },
});
const TOTAL = Number(values.spans);
const RUNS = Number(values.runs);
const FILE = values.file ?? join(tmpdir(), `tapdeck-bench-trace-${TOTAL}-v${GENERATOR_VERSION}.sqlite`);
const TRACE_SPANS = 1000;
const T0 = Date.UTC(2026, 10, 21, 6, 0, 0) * 1000;
const TRACE_XRID = 'bench-trace-0000000000000000000001';
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';

// mulberry32: fast, seeded, the same file every time
let seed = 42;
function rnd(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const hex = (n: number, width: number): string => n.toString(16).padStart(width, '0');
const rid = (): string =>
  hex((rnd() * 2 ** 32) >>> 0, 8) +
  hex((rnd() * 2 ** 32) >>> 0, 8) +
  hex((rnd() * 2 ** 32) >>> 0, 8) +
  hex((rnd() * 2 ** 32) >>> 0, 8);
const seq = (): number => (rnd() * 2 ** 32) >>> 0;

const ROUTES: [string, string, number][] = [
  ['GET', '/api/items', 200],
  ['POST', '/api/orders', 201],
  ['GET', '/api/users', 200],
  ['GET', '/api/users', 404],
  ['PUT', '/api/users', 200],
  ['GET', '/api/inventory', 502],
];

function base(at: number, dur: number): Span {
  return {
    signal_source: 'ebpf',
    observation_point: 's-p',
    start_time_us: at,
    end_time_us: at + dur,
    duration_us: dur,
    node: 'gw-1',
    pid: 100,
    tid: 100,
    process_name: 'nginx',
    container_id: null,
    netns: 4026531840,
    interface: null,
    client_ip: '198.18.0.10',
    client_port: 40000,
    server_ip: '198.18.0.20',
    server_port: 80,
    l4_protocol: 'tcp',
    l7_protocol: 'HTTP',
    version: '1.1',
    request_type: 'GET',
    request_domain: 'api.shop.example',
    request_resource: '/',
    endpoint: '/',
    response_code: 200,
    response_status: 'ok',
    response_exception: null,
    request_length: 220,
    response_length: 1800,
    x_request_id_0: null,
    x_request_id_1: null,
    trace_id: null,
    span_id: null,
    parent_span_id: null,
    syscall_trace_id_request: null,
    syscall_trace_id_response: null,
    req_tcp_seq: null,
    resp_tcp_seq: null,
    app_service: null,
    app_instance: null,
    attributes: null,
  };
}

let sysId = 1_000_000;

/**
 * Background: request k seen at the gateway (s-p, c-p) and at its upstream (s-p); one
 * in ten carries a traceparent and the upstream's OTel server span.
 */
function request(k: number, at: number, out: Span[]): void {
  const [method, path, code] = ROUTES[k % ROUTES.length]!;
  const resource = `${path}/${k % 5000}?page=${k % 7}`;
  const xrid = rid();
  const traced = k % 10 === 0;
  const traceId = traced ? rid() : null;
  const parent = traced ? hex((rnd() * 2 ** 32) >>> 0, 16) : null;
  const status = code >= 500 ? 'server_error' : code >= 400 ? 'client_error' : 'ok';
  const gwPid = 100 + (k % 4);
  const s1 = sysId++;
  const s2 = sysId++;
  const upSeq = seq();
  const upResp = seq();
  const common = {
    request_type: method,
    request_resource: resource,
    endpoint: `${path}/${k % 5000}`,
    response_code: code,
    response_status: status as Span['response_status'],
    x_request_id_0: xrid,
    x_request_id_1: xrid,
    trace_id: traceId,
    span_id: parent,
  };
  out.push({
    ...base(at, 4000 + (k % 3000)),
    ...common,
    pid: gwPid,
    tid: gwPid,
    client_port: 30000 + (k % 30000),
    syscall_trace_id_request: s1,
    syscall_trace_id_response: s2,
    req_tcp_seq: seq(),
    resp_tcp_seq: seq(),
  });
  out.push({
    ...base(at + 300, 3200 + (k % 3000)),
    ...common,
    observation_point: 'c-p',
    pid: gwPid,
    tid: gwPid,
    client_ip: '198.18.0.20',
    client_port: 20000 + (k % 40000),
    server_ip: '198.18.0.30',
    server_port: 8080,
    request_domain: 'svca',
    syscall_trace_id_request: s1,
    syscall_trace_id_response: s2,
    req_tcp_seq: upSeq,
    resp_tcp_seq: upResp,
  });
  out.push({
    ...base(at + 400, 3000 + (k % 3000)),
    ...common,
    pid: 200,
    tid: 200,
    process_name: 'node',
    client_ip: '198.18.0.20',
    client_port: 20000 + (k % 40000),
    server_ip: '198.18.0.30',
    server_port: 8080,
    request_domain: 'svca',
    syscall_trace_id_request: sysId++,
    syscall_trace_id_response: sysId++,
    req_tcp_seq: upSeq,
    resp_tcp_seq: upResp,
  });
  if (traced)
    out.push({
      ...base(at + 450, 2900 + (k % 3000)),
      ...common,
      signal_source: 'otel',
      observation_point: 's-app',
      pid: null,
      tid: null,
      process_name: null,
      span_id: hex((rnd() * 2 ** 32) >>> 0, 16),
      parent_span_id: parent,
      syscall_trace_id_request: null,
      syscall_trace_id_response: null,
      app_service: 'svca',
      app_instance: 'svca-1',
    });
}

/**
 * The trace to assemble: a gateway request whose upstream (instrumented) fans out 249
 * calls to svcb. 3 S spans + svca's server A span + 249 × (A client span, svca c-p,
 * svcb s-p, svcb A server span) = 1,000 spans.
 */
function bigTrace(at: number): Span[] {
  const out: Span[] = [];
  const ids = { x_request_id_0: TRACE_XRID, x_request_id_1: TRACE_XRID, trace_id: TRACE_ID };
  const p0 = 'a0a0a0a0a0a0a0a0';
  const sApp = 'b0b0b0b0b0b0b0b0';
  const gwSeq = seq();
  const upSeq = seq();
  const upResp = seq();
  const dur = 2_000_000;
  out.push({
    ...base(at, dur),
    ...ids,
    span_id: p0,
    request_resource: '/chain/report',
    endpoint: '/chain/report',
    syscall_trace_id_request: 1,
    syscall_trace_id_response: 2,
    req_tcp_seq: gwSeq,
    resp_tcp_seq: seq(),
  });
  out.push({
    ...base(at + 100, dur - 200),
    ...ids,
    span_id: p0,
    observation_point: 'c-p',
    request_domain: 'svca',
    request_resource: '/chain/report',
    endpoint: '/chain/report',
    syscall_trace_id_request: 1,
    syscall_trace_id_response: 2,
    req_tcp_seq: upSeq,
    resp_tcp_seq: upResp,
  });
  out.push({
    ...base(at + 200, dur - 400),
    ...ids,
    span_id: p0,
    pid: 200,
    tid: 200,
    process_name: 'node',
    request_domain: 'svca',
    request_resource: '/chain/report',
    endpoint: '/chain/report',
    syscall_trace_id_request: 3,
    syscall_trace_id_response: 4,
    req_tcp_seq: upSeq,
    resp_tcp_seq: upResp,
  });
  out.push({
    ...base(at + 250, dur - 500),
    ...ids,
    signal_source: 'otel',
    observation_point: 's-app',
    pid: null,
    tid: null,
    process_name: null,
    span_id: sApp,
    parent_span_id: p0,
    app_service: 'svca',
  });
  for (let i = 0; i < 249; i++) {
    const t = at + 1000 + i * 7900;
    const c = hex(0xc0000000 + i, 16);
    const q = seq();
    const r = seq();
    const call = {
      ...ids,
      span_id: c,
      request_domain: 'svcb',
      request_resource: `/api/part/${i}`,
      endpoint: `/api/part/${i}`,
    };
    out.push({
      ...base(t, 7000),
      ...call,
      signal_source: 'otel',
      observation_point: 'c-app',
      pid: null,
      tid: null,
      process_name: null,
      parent_span_id: sApp,
      app_service: 'svca',
    });
    out.push({
      ...base(t + 50, 6900),
      ...call,
      observation_point: 'c-p',
      pid: 200,
      tid: 200,
      process_name: 'node',
      client_ip: '198.18.0.30',
      client_port: 50000 + i,
      server_ip: '198.18.0.40',
      server_port: 8080,
      req_tcp_seq: q,
      resp_tcp_seq: r,
      syscall_trace_id_request: 10 + i,
      syscall_trace_id_response: 10 + i,
    });
    out.push({
      ...base(t + 100, 6700),
      ...call,
      pid: 300,
      tid: 300,
      process_name: 'node',
      client_ip: '198.18.0.30',
      client_port: 50000 + i,
      server_ip: '198.18.0.40',
      server_port: 8080,
      req_tcp_seq: q,
      resp_tcp_seq: r,
      syscall_trace_id_request: 5000 + i,
      syscall_trace_id_response: 5000 + i,
    });
    out.push({
      ...base(t + 150, 6500),
      ...call,
      signal_source: 'otel',
      observation_point: 's-app',
      pid: null,
      tid: null,
      process_name: null,
      span_id: hex(0xd0000000 + i, 16),
      parent_span_id: c,
      app_service: 'svcb',
    });
  }
  return out;
}

function generate(file: string): void {
  const t0 = performance.now();
  rmSync(file, { force: true });
  rmSync(`${file}-wal`, { force: true });
  rmSync(`${file}-shm`, { force: true });
  const db = new Database(file);
  db.pragma('journal_mode = OFF');
  db.pragma('synchronous = OFF');
  db.pragma('cache_size = -262144'); // 256 MiB
  migrate(db);
  // Load without indexes, then build them once: far faster than maintaining them per row.
  const indexes = db
    .prepare(`SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'spans' AND sql IS NOT NULL`)
    .all() as { name: string; sql: string }[];
  for (const i of indexes) db.exec(`DROP INDEX ${i.name}`);
  const cap = Number(
    db.prepare(`INSERT INTO captures (target, state, started_at_us) VALUES ('root@gw-1', 'done', ?)`).run(T0)
      .lastInsertRowid,
  );
  const stmt = db.prepare(
    `INSERT INTO spans (capture_id, ${SPAN_FIELDS.join(', ')}) VALUES (?, ${SPAN_FIELDS.map(() => '?').join(', ')})`,
  );
  const vals = new Array<unknown>(SPAN_FIELDS.length + 1);
  vals[0] = cap;
  const put = (s: Span): void => {
    for (let i = 0; i < SPAN_FIELDS.length; i++) {
      const f = SPAN_FIELDS[i]!;
      const v = s[f];
      vals[i + 1] = f === 'attributes' && v !== null ? JSON.stringify(v) : v;
    }
    stmt.run(vals);
  };
  let written = 0;
  let k = 0;
  const traceAt = Math.floor(TOTAL / 2);
  let traceDone = false;
  const batch: Span[] = [];
  const insertBatch = db.transaction((spans: Span[]) => {
    for (const s of spans) put(s);
  });
  let lastLog = performance.now();
  while (written < TOTAL) {
    batch.length = 0;
    while (batch.length < 100_000 && written + batch.length < TOTAL) {
      if (!traceDone && written + batch.length >= traceAt) {
        batch.push(...bigTrace(T0 + k * 1000));
        traceDone = true;
      }
      request(k, T0 + k * 1000, batch);
      k++;
    }
    batch.length = Math.min(batch.length, TOTAL - written);
    insertBatch(batch);
    written += batch.length;
    if (performance.now() - lastLog > 10_000) {
      lastLog = performance.now();
      process.stderr.write(
        `  generated ${written.toLocaleString('en-US')} spans in ${((lastLog - t0) / 1000).toFixed(0)} s\n`,
      );
    }
  }
  db.prepare(`UPDATE captures SET spans_received = ? WHERE id = ?`).run(written, cap);
  const tLoad = performance.now();
  for (const i of indexes) db.exec(i.sql);
  db.exec(`CREATE TABLE bench_meta (generator_version INTEGER, spans INTEGER)`);
  db.prepare(`INSERT INTO bench_meta VALUES (?, ?)`).run(GENERATOR_VERSION, written);
  db.pragma('journal_mode = WAL');
  db.close();
  const t1 = performance.now();
  console.log(
    `generated ${written.toLocaleString('en-US')} spans (${k.toLocaleString('en-US')} background requests + the ${TRACE_SPANS}-span trace) ` +
      `in ${((t1 - t0) / 1000).toFixed(1)} s: rows ${((tLoad - t0) / 1000).toFixed(1)} s (${Math.round(written / ((tLoad - t0) / 1000)).toLocaleString('en-US')} rows/s), ` +
      `${indexes.length} indexes ${((t1 - tLoad) / 1000).toFixed(1)} s; ${(statSync(file).size / 2 ** 30).toFixed(2)} GiB`,
  );
}

function cached(file: string): boolean {
  if (values.regenerate || !existsSync(file)) return false;
  try {
    const db = new Database(file, { readonly: true });
    const m = db.prepare(`SELECT generator_version AS v, spans FROM bench_meta`).get() as
      { v: number; spans: number } | undefined;
    db.close();
    return m?.v === GENERATOR_VERSION && m.spans === TOTAL;
  } catch {
    return false;
  }
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};
const fmt = (ms: number): string => `${ms.toFixed(1)} ms`;

if (cached(FILE)) console.log(`using the cached capture file ${FILE}`);
else generate(FILE);

// Cold: a new connection per run.
const cold: number[] = [];
const opening: number[] = [];
let spanCount = 0;
let rounds = 0;
for (let i = 0; i < Math.max(3, Math.floor(RUNS / 4)); i++) {
  const t0 = performance.now();
  const db = openDb(FILE, { readonly: true });
  opening.push(performance.now() - t0);
  const t = assembleTraceFrom(db, { requestId: TRACE_XRID });
  cold.push(performance.now() - t0);
  spanCount = t.spanCount;
  rounds = t.rounds;
  db.close();
}
// Warm: one connection.
const db = openDb(FILE, { readonly: true });
const warm: number[] = [];
const warmCpu: number[] = [];
const byTrace: number[] = [];
let pruned = 0;
let depth = 0;
for (let i = 0; i < RUNS; i++) {
  let t0 = performance.now();
  const c0 = process.cpuUsage();
  const t = assembleTraceFrom(db, { requestId: TRACE_XRID });
  warm.push(performance.now() - t0);
  const c = process.cpuUsage(c0);
  warmCpu.push((c.user + c.system) / 1000);
  pruned = t.pruned;
  const walk = (n: { depth: number; children: { depth: number; children: unknown[] }[] }): void => {
    depth = Math.max(depth, n.depth);
    n.children.forEach((c) => walk(c as typeof n));
  };
  t.roots.forEach(walk);
  t0 = performance.now();
  assembleTraceFrom(db, { traceId: TRACE_ID });
  byTrace.push(performance.now() - t0);
}
console.log(
  `trace: ${spanCount} spans in the tree (${pruned} pruned), depth ${depth}, ${rounds} search rounds, among ${TOTAL.toLocaleString('en-US')} spans`,
);
console.log(
  `assembly by X-Request-ID, cold (new connection): median ${fmt(pct(cold, 0.5))}, p95 ${fmt(pct(cold, 0.95))} over ${cold.length} runs` +
    ` → ${(pct(cold, 0.95) / BUDGET_MS).toFixed(2)}× the ${BUDGET_MS} ms budget (opening the file: median ${fmt(pct(opening, 0.5))})`,
);
console.log(
  `assembly by X-Request-ID, warm: median ${fmt(pct(warm, 0.5))}, p95 ${fmt(pct(warm, 0.95))} over ${warm.length} runs` +
    ` → ${(pct(warm, 0.95) / BUDGET_MS).toFixed(2)}× the ${BUDGET_MS} ms budget`,
);
// On a shared machine the wall clock includes waiting for a core; CPU time does not.
console.log(
  `  CPU time of warm assembly (this process only; the machine's load average was ${loadavg()[0]!.toFixed(1)} on ${cpus().length} cores): ` +
    `median ${fmt(pct(warmCpu, 0.5))}, p95 ${fmt(pct(warmCpu, 0.95))}`,
);
console.log(`assembly by trace id, warm: median ${fmt(pct(byTrace, 0.5))}, p95 ${fmt(pct(byTrace, 0.95))}`);

// What the migration-2 indexes buy: one lookup with its index, and the same lookup
// forced to scan the table (SQLite's NOT INDEXED).
const someSeq = (
  db
    .prepare(`SELECT req_tcp_seq AS v FROM spans WHERE x_request_id_0 = ? AND observation_point = 'c-p'`)
    .get(TRACE_XRID) as { v: number }
).v;
for (const [col, v] of [
  ['req_tcp_seq', someSeq],
  ['syscall_trace_id_request', 1_000_123],
] as const) {
  let t0 = performance.now();
  db.prepare(`SELECT id FROM spans WHERE ${col} = ?`).all(v);
  const withIdx = performance.now() - t0;
  t0 = performance.now();
  db.prepare(`SELECT id FROM spans NOT INDEXED WHERE ${col} = ?`).all(v);
  const scan = performance.now() - t0;
  console.log(
    `lookup by ${col}: ${withIdx.toFixed(2)} ms with its index, ${fmt(scan)} scanning (one search round does several)`,
  );
}
db.close();

// What they cost at ingest: the store's own batched insert into fresh files of the
// latest schema, without and with the trace indexes of migration 2.
const dir = mkdtempSync(join(tmpdir(), 'td-bench-ingest-'));
const sample: Span[] = [];
for (let k = 0; sample.length < 200_000; k++) request(k, T0 + k * 1000, sample);
const traceIndexes = [
  ...MIGRATIONS.find((m) => m.version === 2)!.sql.matchAll(/CREATE INDEX IF NOT EXISTS (\w+)/g),
].map((m) => m[1]!);
for (const [label, withTrace] of [
  ['without the trace indexes (request-log indexes only)', false],
  ['with the trace indexes', true],
] as const) {
  const f = join(dir, `${withTrace ? 'trace' : 'log'}.sqlite`);
  // the pragmas of openDb
  const conn = new Database(f);
  conn.pragma('journal_mode = WAL');
  conn.pragma('synchronous = NORMAL');
  conn.pragma('temp_store = MEMORY');
  migrate(conn);
  if (!withTrace) for (const name of traceIndexes) conn.exec(`DROP INDEX ${name}`);
  const cap = createCapture(conn, { target: 'bench', startedAtUs: T0 });
  const t0 = performance.now();
  for (let i = 0; i < sample.length; i += 5000) insertSpans(conn, cap, sample.slice(i, i + 5000));
  const s = (performance.now() - t0) / 1000;
  console.log(
    `insert ${sample.length.toLocaleString('en-US')} spans, ${label}: ${Math.round(sample.length / s).toLocaleString('en-US')} spans/s`,
  );
  conn.close();
}
rmSync(dir, { recursive: true, force: true });
