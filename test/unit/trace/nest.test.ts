// Nesting on hand-built S, N and A spans: the gateway → svca → svcb chain of the lab,
// network span sets with N spans between process spans, A spans inside the process
// that emitted them, and the client process span that opens the next network set.

import { describe, expect, it } from 'vitest';
import type { Span, StoredSpan } from '../../../main/api/records.ts';
import { app, net, nodeOf, nodes, outline, sp, store } from './fixtures.ts';

const label = (s: StoredSpan): string =>
  `${s.signal_source === 'otel' ? 'A' : s.signal_source === 'packet' ? 'N' : 'S'} ${s.observation_point} ${s.process_name ?? s.app_service ?? s.interface}`;

const GW = { pid: 100, process_name: 'nginx' };
const SVCA = { pid: 200, process_name: 'svca' };
const SVCB = { pid: 300, process_name: 'svcb' };
/** One hop's socket and sequence numbers. */
const hop = (n: number): Partial<Span> => ({
  client_ip: `198.18.0.${n}`,
  client_port: 40000 + n,
  server_ip: `198.18.0.${n + 10}`,
  server_port: 8080,
  req_tcp_seq: 1000 * n,
  resp_tcp_seq: 1000 * n + 500,
});
const xr = { x_request_id_0: 'r1', x_request_id_1: 'r1' };

/** client → gateway (s-p) → [gw c-p → svca s-p] → svca c-p → svcb s-p, S spans only. */
function chain(): Span[] {
  return [
    sp({ ...GW, ...hop(1), ...xr, at: 0, dur: 10_000, syscall_trace_id_request: 11, syscall_trace_id_response: 12 }),
    sp({
      ...GW,
      ...hop(2),
      ...xr,
      at: 500,
      dur: 9_000,
      observation_point: 'c-p',
      syscall_trace_id_request: 11,
      syscall_trace_id_response: 12,
      request_domain: 'svca',
    }),
    sp({
      ...SVCA,
      ...hop(2),
      ...xr,
      at: 600,
      dur: 8_700,
      syscall_trace_id_request: 21,
      syscall_trace_id_response: 22,
      request_domain: 'svca',
    }),
    sp({
      ...SVCA,
      ...hop(3),
      ...xr,
      at: 1_000,
      dur: 7_000,
      observation_point: 'c-p',
      syscall_trace_id_request: 21,
      syscall_trace_id_response: 22,
      request_domain: 'svcb',
      request_resource: '/api/b',
      endpoint: '/api/b',
    }),
    sp({
      ...SVCB,
      ...hop(3),
      ...xr,
      at: 1_100,
      dur: 6_700,
      syscall_trace_id_request: 31,
      syscall_trace_id_response: 32,
      request_domain: 'svcb',
      request_resource: '/api/b',
      endpoint: '/api/b',
    }),
  ];
}

describe('nesting', () => {
  it('nests the S spans of client → gateway → svca → svcb as one chain, from any span', () => {
    const f = store(chain());
    const expected = ['S s-p nginx', '  S c-p nginx', '    S s-p svca', '      S c-p svca', '        S s-p svcb'];
    for (let i = 0; i < 5; i++) {
      const t = f.trace({ spanId: f.id(i) });
      expect(outline(t, label)).toEqual(expected);
      expect(t.pruned).toBe(0);
      expect(nodes(t).map((n) => n.depth)).toEqual([0, 1, 2, 3, 4]);
    }
    expect(outline(f.trace({ requestId: 'r1' }), label)).toEqual(expected);
  });

  it('places N spans between the client and the server process span, ordered client side to server side', () => {
    const f = store([
      ...chain(),
      // the gateway → svca exchange seen on the wire: at svca's NIC (s), the gateway's NIC (c), the node's (s-nd)
      net({ ...hop(2), request_domain: 'svca', observation_point: 's', at: 560, dur: 8_800, interface: 'svca-eth0' }),
      net({ ...hop(2), request_domain: 'svca', observation_point: 'c', at: 540, dur: 8_900, interface: 'gw-eth0' }),
      net({ ...hop(2), request_domain: 'svca', observation_point: 's-nd', at: 550, dur: 8_850, interface: 'tdlab0' }),
    ]);
    const t = f.trace({ requestId: 'r1' });
    expect(outline(t, label)).toEqual([
      'S s-p nginx',
      '  S c-p nginx',
      '    N c gw-eth0',
      '      N s-nd tdlab0',
      '        N s svca-eth0',
      '          S s-p svca',
      '            S c-p svca',
      '              S s-p svcb',
    ]);
    expect(nodeOf(t, f.id(5))!.kind).toBe('N');
  });

  it('places N spans of an exchange whose process spans were not captured, by socket and time', () => {
    const f = store([
      sp({ ...GW, ...hop(1), ...xr, at: 0, dur: 10_000, syscall_trace_id_request: 11 }),
      sp({
        ...GW,
        ...hop(2),
        ...xr,
        at: 500,
        dur: 9_000,
        observation_point: 'c-p',
        syscall_trace_id_request: 11,
        request_domain: 'svca',
      }),
      net({
        ...hop(2),
        ...xr,
        request_domain: 'svca',
        req_tcp_seq: null,
        resp_tcp_seq: null,
        observation_point: 'c',
        at: 540,
        dur: 8_900,
        interface: 'gw-eth0',
      }),
    ]);
    expect(outline(f.trace({ requestId: 'r1' }), label)).toEqual(['S s-p nginx', '  S c-p nginx', '    N c gw-eth0']);
  });

  it('nests A spans by span ids under the server process span of the process that emitted them', () => {
    // The gateway forwards traceparent 00-t1-p0-01; svca's SDK makes a server span s1
    // (parent p0), an internal span i1 and a client span c1 whose id svca sends to svcb.
    const t1 = { trace_id: 't1' };
    const f = store([
      sp({ ...GW, ...hop(1), ...xr, ...t1, span_id: 'p0', at: 0, dur: 10_000, syscall_trace_id_request: 11 }),
      sp({
        ...GW,
        ...hop(2),
        ...xr,
        ...t1,
        span_id: 'p0',
        at: 500,
        dur: 9_000,
        observation_point: 'c-p',
        syscall_trace_id_request: 11,
        request_domain: 'svca',
      }),
      sp({ ...SVCA, ...hop(2), ...xr, ...t1, span_id: 'p0', at: 600, dur: 8_700, request_domain: 'svca' }),
      app({ ...t1, span_id: 's1', parent_span_id: 'p0', observation_point: 's-app', at: 650, dur: 8_600 }),
      app({ ...t1, span_id: 'i1', parent_span_id: 's1', observation_point: 'app', at: 700, dur: 200 }),
      app({ ...t1, span_id: 'c1', parent_span_id: 's1', observation_point: 'c-app', at: 950, dur: 7_100 }),
      sp({
        ...SVCA,
        ...hop(3),
        ...xr,
        ...t1,
        span_id: 'c1',
        at: 1_000,
        dur: 7_000,
        observation_point: 'c-p',
        request_domain: 'svcb',
        request_resource: '/api/b',
        endpoint: '/api/b',
      }),
      sp({
        ...SVCB,
        ...hop(3),
        ...xr,
        ...t1,
        span_id: 'c1',
        at: 1_100,
        dur: 6_700,
        request_domain: 'svcb',
        request_resource: '/api/b',
        endpoint: '/api/b',
      }),
    ]);
    const t = f.trace({ traceId: 't1' });
    expect(outline(t, label)).toEqual([
      'S s-p nginx',
      '  S c-p nginx',
      '    S s-p svca',
      '      A s-app svca',
      '        A app svca',
      '        A c-app svca',
      '          S c-p svca',
      '            S s-p svcb',
    ]);
    expect(nodeOf(t, f.id(3))).toMatchObject({ kind: 'A', depth: 3 });
    // the client process span is the leaf of svca's set and opens the next network set
    expect(nodeOf(t, f.id(6))).toMatchObject({ depth: 5 });
  });

  it('nests an SDK root span (no traceparent from the gateway) under its own process’s server span', () => {
    // As the lab showed: nginx sends no traceparent, so svca's OTel SDK starts a trace
    // (s-app without a parent); the JS SDK stamps its start with Date.now(), floored to
    // the millisecond, so it begins up to 1 ms before svca's s-p span and before every
    // span of the request, the client's first packet included; it ends when the whole
    // response is handed over, after svca's s-p span (which ends at its first byte).
    const t1 = { trace_id: 't1' };
    const svcaApp = { pid: SVCA.pid, server_ip: hop(2).server_ip, server_port: 8080, ...xr, ...t1 };
    const spans = (withPid: boolean): Span[] => [
      net({ ...hop(1), ...xr, observation_point: 'c', at: 400, dur: 9_990, interface: 'client-eth0' }),
      sp({ ...GW, ...hop(1), ...xr, at: 410, dur: 9_900, syscall_trace_id_request: 11 }),
      sp({
        ...GW,
        ...hop(2),
        ...xr,
        at: 500,
        dur: 9_000,
        observation_point: 'c-p',
        syscall_trace_id_request: 11,
        request_domain: 'svca',
      }),
      net({ ...hop(2), ...xr, observation_point: 'c', at: 510, dur: 8_980, interface: 'gw-eth0' }),
      net({ ...hop(2), ...xr, observation_point: 's', at: 520, dur: 8_960, interface: 'svca-eth0' }),
      sp({ ...SVCA, ...hop(2), ...xr, at: 600, dur: 8_700, request_domain: 'svca' }),
      app({
        ...svcaApp,
        ...(withPid ? {} : { pid: null }),
        span_id: 's1',
        observation_point: 's-app',
        at: 0,
        dur: 10_500,
      }),
      app({
        ...svcaApp,
        ...(withPid ? {} : { pid: null }),
        server_ip: hop(3).server_ip,
        span_id: 'c1',
        parent_span_id: 's1',
        observation_point: 'c-app',
        at: 1_000,
        dur: 6_200,
      }),
      sp({ ...SVCA, ...hop(3), ...xr, ...t1, span_id: 'c1', at: 1_300, dur: 5_800, observation_point: 'c-p' }),
      sp({ ...SVCB, ...hop(3), ...xr, ...t1, span_id: 'c1', at: 1_400, dur: 5_600 }),
    ];
    const expected = [
      'N c client-eth0',
      '  S s-p nginx',
      '    S c-p nginx',
      '      N c gw-eth0',
      '        N s svca-eth0',
      '          S s-p svca',
      '            A s-app svca',
      '              A c-app svca',
      '                S c-p svca',
      '                  S s-p svcb',
    ];
    // the A span has the process's pid (the OTLP receiver maps process.pid) or only its socket
    for (const withPid of [true, false]) {
      const f = store(spans(withPid));
      const labelA = (s: StoredSpan): string =>
        s.signal_source === 'otel' ? label({ ...s, process_name: null }) : label(s);
      // from the X-Request-ID: the earliest span carrying it is the A span
      expect(outline(f.trace({ requestId: 'r1' }), labelA)).toEqual(expected);
      expect(outline(f.trace({ spanId: f.id(6) }), labelA)).toEqual(expected);
    }
  });

  it('nests A spans without S spans by span ids alone', () => {
    const f = store([
      app({ span_id: 'a', observation_point: 's-app', at: 0, dur: 1000 }),
      app({ span_id: 'b', parent_span_id: 'a', at: 100, dur: 100 }),
      app({ span_id: 'c', parent_span_id: 'a', at: 300, dur: 100 }),
      app({ span_id: 'd', parent_span_id: 'c', at: 310, dur: 10 }),
    ]);
    const t = f.trace({ spanId: f.id(3) });
    const l = (s: StoredSpan): string => s.span_id!;
    expect(outline(t, l)).toEqual(['a', '  b', '  c', '    d']);
  });

  it('puts a client span under the server span its thread served, not a concurrent one', () => {
    // two requests in one nginx worker at once; only thread ids tell them apart
    const f = store([
      sp({ ...GW, at: 0, dur: 10_000, syscall_trace_id_request: 11, x_request_id_1: 'r1', trace_id: 'tA' }),
      sp({ ...GW, at: 100, dur: 10_000, syscall_trace_id_request: 15, x_request_id_1: 'r2', trace_id: 'tA' }),
      sp({ ...GW, at: 500, dur: 1_000, observation_point: 'c-p', syscall_trace_id_request: 15, trace_id: 'tA' }),
    ]);
    const t = f.trace({ spanId: f.id(1) });
    expect(nodeOf(t, f.id(2))).toMatchObject({ depth: 1 });
  });
});
