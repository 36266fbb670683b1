// Hand-built span sets for trace assembly, stored in a real SQLite capture file (in
// memory) through the store's own insert, so assembly runs its real indexed lookups.

import type { Span, StoredSpan } from '../../../main/api/records.ts';
import type { Trace, TraceNode, TraceStart } from '../../../main/api/trace.ts';
import { assembleTraceFrom, createCapture, insertSpans, openDb, type Db } from '../../../main/store/db.ts';
import type { AssembleOptions } from '../../../main/trace/assemble.ts';

export const T0 = Date.UTC(2026, 10, 21, 7, 0, 0) * 1000;

/** Span fields plus `at` (start, µs after T0) and `dur` (µs). */
export type SpanOver = Partial<Span> & { at?: number; dur?: number };

/** A span with nothing to link by, `over` on top. */
export function sp(over: SpanOver = {}): Span {
  const { at = 0, dur = 1000, ...rest } = over;
  return {
    signal_source: 'ebpf',
    observation_point: 's-p',
    start_time_us: T0 + at,
    end_time_us: T0 + at + dur,
    duration_us: dur,
    node: 'n1',
    pid: 100,
    tid: 100,
    process_name: 'nginx',
    container_id: null,
    netns: null,
    interface: null,
    client_ip: null,
    client_port: null,
    server_ip: null,
    server_port: null,
    l4_protocol: 'tcp',
    l7_protocol: 'HTTP',
    version: '1.1',
    request_type: 'GET',
    request_domain: 'gw',
    request_resource: '/api/x?id=1',
    endpoint: '/api/x',
    response_code: 200,
    response_status: 'ok',
    response_exception: null,
    request_length: 100,
    response_length: 200,
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
    ...rest,
  };
}

/** An OTel (A) span. */
export function app(over: SpanOver): Span {
  return sp({
    signal_source: 'otel',
    observation_point: 'app',
    pid: null,
    tid: null,
    process_name: null,
    l4_protocol: null,
    app_service: 'svca',
    ...over,
  });
}

/** A packet (N) span. */
export function net(over: SpanOver): Span {
  return sp({ signal_source: 'packet', pid: null, tid: null, process_name: null, interface: 'eth0', ...over });
}

export interface Fixture {
  db: Db;
  /** Row id of the i-th span given. */
  id(i: number): number;
  trace(start: TraceStart, opts?: AssembleOptions): Trace;
}

export function store(spans: Span[], moreCaptures: Span[][] = []): Fixture {
  const db = openDb(':memory:');
  const cap = createCapture(db, { target: 'root@n1', startedAtUs: T0 });
  insertSpans(db, cap, spans);
  for (const more of moreCaptures) insertSpans(db, createCapture(db, { target: 'root@n2', startedAtUs: T0 }), more);
  const ids = (db.prepare('SELECT id FROM spans WHERE capture_id = ? ORDER BY id').all(cap) as { id: number }[]).map(
    (r) => r.id,
  );
  return { db, id: (i) => ids[i]!, trace: (start, opts) => assembleTraceFrom(db, start, opts) };
}

/** Every node of a trace, depth first. */
export function nodes(t: Trace): TraceNode[] {
  const out: TraceNode[] = [];
  const walk = (n: TraceNode): void => {
    out.push(n);
    n.children.forEach(walk);
  };
  t.roots.forEach(walk);
  return out;
}

export function nodeOf(t: Trace, id: number): TraceNode | undefined {
  return nodes(t).find((n) => n.span.id === id);
}

/** The tree as one line per node, indented two spaces per depth, labelled by `label`. */
export function outline(t: Trace, label: (s: StoredSpan) => string): string[] {
  return nodes(t).map((n) => `${'  '.repeat(n.depth)}${label(n.span)}`);
}
