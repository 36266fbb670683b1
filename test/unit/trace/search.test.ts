// The search's linking rules and conflict rules, one at a time, on hand-built spans in
// a real SQLite capture file. Each pair shares exactly one key.

import { describe, expect, it } from 'vitest';
import type { Span } from '../../../main/api/records.ts';
import { app, nodeOf, sp, store, type SpanOver } from './fixtures.ts';

/** A gateway server span (pid 100) and a client span of the same process inside it. */
const outer = (over: SpanOver = {}): Span => sp({ at: 0, dur: 1000, ...over });
const inner = (over: SpanOver = {}): Span =>
  sp({ at: 100, dur: 500, observation_point: 'c-p', request_domain: 'svca', ...over });

describe('linking rules', () => {
  it('links spans with the same trace_id', () => {
    const f = store([outer({ trace_id: 't1' }), inner({ trace_id: 't1' }), inner({ trace_id: 't2' })]);
    const t = f.trace({ traceId: 't1' });
    expect(t.startSpanId).toBe(f.id(0));
    expect(t.spanCount).toBe(2);
    expect(nodeOf(t, f.id(1))).toMatchObject({ linkedBy: 'trace_id', linkedFrom: f.id(0), depth: 1 });
  });

  it('links a span to its parent and child by span_id / parent_span_id', () => {
    const f = store([
      app({ observation_point: 's-app', span_id: 'a1', at: 0, dur: 1000 }),
      app({ span_id: 'a2', parent_span_id: 'a1', at: 100, dur: 300 }),
      app({ span_id: 'a3', parent_span_id: 'a2', at: 150, dur: 100 }),
      app({ span_id: 'a4', parent_span_id: 'zz', at: 150, dur: 100 }),
    ]);
    // start in the middle: the search goes up (span_id) and down (parent_span_id)
    const t = f.trace({ spanId: f.id(1) });
    expect(t.spanCount).toBe(3);
    expect(t.roots[0]!.span.id).toBe(f.id(0));
    expect(nodeOf(t, f.id(0))).toMatchObject({ linkedBy: 'span_id', linkedFrom: f.id(1), depth: 0, kind: 'A' });
    expect(nodeOf(t, f.id(2))).toMatchObject({ linkedBy: 'span_id', linkedFrom: f.id(1), depth: 2 });
  });

  it('links by X-Request-ID: x_request_id_0 of one equal to x_request_id_1 of another', () => {
    const f = store([outer({ x_request_id_1: 'r1' }), inner({ x_request_id_0: 'r1' })]);
    const t = f.trace({ requestId: 'r1' });
    expect(t.spanCount).toBe(2);
    expect(nodeOf(t, f.id(1))).toMatchObject({ linkedBy: 'x_request_id', linkedFrom: f.id(0), depth: 1 });
  });

  it('links by X-Request-ID passed through unchanged', () => {
    const f = store([outer({ x_request_id_0: 'r2' }), inner({ x_request_id_0: 'r2' })]);
    const t = f.trace({ spanId: f.id(1) });
    expect(t.spanCount).toBe(2);
    expect(nodeOf(t, f.id(0))).toMatchObject({ linkedBy: 'x_request_id', linkedFrom: f.id(1), depth: 0 });
  });

  it('links by syscall_trace_id within one process on one node', () => {
    const sys = { syscall_trace_id_request: 11, syscall_trace_id_response: 12 };
    const f = store([
      outer(sys),
      inner(sys),
      inner({ ...sys, pid: 101 }), // another process
      inner({ ...sys, node: 'n2' }), // another node
      inner({ ...sys, at: 5000 }), // not during the server span: another request
    ]);
    const t = f.trace({ spanId: f.id(0) });
    expect(t.spanCount).toBe(2);
    expect(nodeOf(t, f.id(1))).toMatchObject({ linkedBy: 'syscall_trace_id', linkedFrom: f.id(0), depth: 1 });
  });

  it('links by the response syscall trace id alone', () => {
    const f = store([
      outer({ syscall_trace_id_request: 11, syscall_trace_id_response: 12 }),
      inner({ syscall_trace_id_request: 99, syscall_trace_id_response: 12 }),
    ]);
    expect(nodeOf(f.trace({ spanId: f.id(0) }), f.id(1))).toMatchObject({ linkedBy: 'syscall_trace_id' });
  });

  it('links by TCP sequence numbers within a time tolerance, tighter on one node than across nodes', () => {
    const client = sp({ observation_point: 'c-p', at: 0, dur: 1000, req_tcp_seq: 3000, resp_tcp_seq: 4000 });
    const server = (over: SpanOver): Span =>
      sp({ pid: 200, process_name: 'svca', at: 100, dur: 800, req_tcp_seq: 3000, resp_tcp_seq: 4000, ...over });
    const f = store([client, server({})]);
    const t = f.trace({ spanId: f.id(0) });
    expect(nodeOf(t, f.id(1))).toMatchObject({ linkedBy: 'tcp_seq', linkedFrom: f.id(0), depth: 1 });
    // 400 ms later on the same node: another exchange (the sequence number wrapped or was reused)
    const sameNode = store([client, server({ at: 400_000 })]).trace({ spanId: 1 });
    expect(sameNode.spanCount + sameNode.pruned).toBe(1);
    // 400 ms on another node is within the cross-node tolerance (clocks differ)
    const otherNode = store([client, server({ at: 400_000, node: 'n2' })]).trace({ spanId: 1 });
    expect(otherNode.spanCount).toBe(2);
  });

  it('finds every span of a chain in bounded rounds, and stops at the round limit', () => {
    // a → b by X-Request-ID, b → c by syscall id, c → d by TCP sequence
    const f = store([
      outer({ x_request_id_1: 'r1' }),
      inner({ x_request_id_0: 'r1', syscall_trace_id_request: 5 }),
      inner({ at: 150, dur: 100, syscall_trace_id_request: 5, req_tcp_seq: 70 }),
      sp({ pid: 300, at: 160, dur: 50, req_tcp_seq: 70, request_domain: 'svca' }),
    ]);
    const all = f.trace({ spanId: f.id(0) });
    expect(all.spanCount + all.pruned).toBe(4);
    expect(all.rounds).toBe(4); // three rounds that found something, one that found nothing
    expect(all.truncated).toBe(false);
    const two = f.trace({ spanId: f.id(0) }, { maxRounds: 2 });
    expect(two.spanCount + two.pruned).toBe(3);
    expect(two.truncated).toBe(true);
  });

  it('stops at the span limit', () => {
    const spans = [outer({ x_request_id_1: 'r1' })];
    for (let i = 0; i < 20; i++) spans.push(inner({ at: 10 + i * 40, dur: 30, x_request_id_0: 'r1' }));
    const f = store(spans);
    const t = f.trace({ requestId: 'r1' }, { maxSpans: 5 });
    expect(t.spanCount + t.pruned).toBe(5);
    expect(t.truncated).toBe(true);
  });
});

describe('conflict rules: a candidate that conflicts is not linked', () => {
  const client = (over: SpanOver = {}): Span =>
    sp({ observation_point: 'c-p', at: 0, dur: 1000, req_tcp_seq: 3000, resp_tcp_seq: 4000, ...over });
  const server = (over: SpanOver): Span =>
    sp({ pid: 200, at: 100, dur: 800, req_tcp_seq: 3000, resp_tcp_seq: 4000, ...over });

  it.each([
    ['protocol', {}, { l7_protocol: 'Redis' }],
    ['endpoint', {}, { request_type: 'POST' }],
    ['endpoint', {}, { endpoint: '/api/y' }],
    ['resource', {}, { request_resource: '/api/x?id=2' }],
    ['resource', {}, { request_domain: 'other' }],
    ['status', {}, { response_code: 500, response_status: 'server_error' as const }],
    ['tcp_seq', {}, { resp_tcp_seq: 4444 }],
    ['x_request_id', { x_request_id_0: 'r1' }, { x_request_id_0: 'r2' }],
    ['trace_id', { trace_id: 't1' }, { trace_id: 't2' }],
  ])('TCP sequence link refused on %s', (reason, clientOver: SpanOver, serverOver: SpanOver) => {
    const f = store([client(clientOver), server(serverOver)]);
    const t = f.trace({ spanId: f.id(0) });
    expect(t.spanCount).toBe(1);
    expect(t.conflicts).toEqual({ [reason]: 1 });
  });

  it('a server span whose fields are unknown (null) does not conflict', () => {
    const f = store([
      client(),
      server({ request_type: null, endpoint: null, response_code: null, resp_tcp_seq: null }),
    ]);
    expect(f.trace({ spanId: f.id(0) }).spanCount).toBe(2);
  });

  it('thread link refused when the X-Request-IDs differ (the thread served another request)', () => {
    const sys = { syscall_trace_id_request: 11, syscall_trace_id_response: 12 };
    const f = store([outer({ ...sys, x_request_id_1: 'r1' }), inner({ ...sys, x_request_id_0: 'r2' })]);
    const t = f.trace({ spanId: f.id(0) });
    expect(t.spanCount).toBe(1);
    expect(t.conflicts).toEqual({ x_request_id: 1 });
  });

  it('thread link refused when the trace ids differ', () => {
    const sys = { syscall_trace_id_request: 11 };
    const f = store([outer({ ...sys, trace_id: 't1' }), inner({ ...sys, trace_id: 't2' })]);
    expect(f.trace({ spanId: f.id(0) }).conflicts).toEqual({ trace_id: 1 });
  });

  it('X-Request-ID link refused when the trace ids differ', () => {
    const f = store([outer({ x_request_id_1: 'r1', trace_id: 't1' }), inner({ x_request_id_0: 'r1', trace_id: 't2' })]);
    const t = f.trace({ requestId: 'r1' });
    expect(t.spanCount).toBe(1);
    expect(t.conflicts).toEqual({ trace_id: 1 });
  });

  it('span id link refused when the X-Request-IDs differ', () => {
    const f = store([
      app({ span_id: 'a1', x_request_id_0: 'r1', at: 0 }),
      app({ span_id: 'a2', parent_span_id: 'a1', x_request_id_0: 'r9', at: 10, dur: 10 }),
    ]);
    expect(f.trace({ spanId: f.id(0) }).conflicts).toEqual({ x_request_id: 1 });
  });

  it('a conflicting candidate is still linked when another path reaches it without conflict', () => {
    const f = store([
      client({ x_request_id_0: 'r1' }),
      server({ x_request_id_0: 'r1', request_domain: 'other' }), // conflicts on the TCP link...
    ]);
    // ...but X-Request-ID links it first (no same-exchange claim, no conflict)
    const t = f.trace({ spanId: f.id(0) });
    expect(nodeOf(t, f.id(1))).toMatchObject({ linkedBy: 'x_request_id' });
  });
});
