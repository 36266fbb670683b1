// Hand-built assembled traces (main/api/trace.ts) for the trace view's unit tests and
// its paint benchmark: a gateway (nginx, as Kong/APISIX run it) calling instrumented
// services, seen as S spans (syscalls), N spans (NIC) and A spans (OTel), with
// concurrent children and gaps, as DeepFlow's nesting rules place them
// (process span → network spans → process span of the callee → its app spans).

import type { StoredSpan } from '../../main/api/records.ts';
import type { Trace, TraceNode } from '../../main/api/trace.ts';

export interface SpanSketch {
  kind: 'A' | 'S' | 'N';
  op: StoredSpan['observation_point'];
  /** µs after the trace's start. */
  at: number;
  dur: number;
  node: string;
  process?: string;
  pid?: number;
  service?: string;
  instance?: string;
  iface?: string;
  method?: string;
  path?: string;
  code?: number;
  children?: SpanSketch[];
}

const SOURCE = { A: 'otel', S: 'ebpf', N: 'packet' } as const;

function storedSpan(s: SpanSketch, id: number, t0: number, traceId: string): StoredSpan {
  const code = s.code ?? 200;
  const path = s.path ?? '/';
  return {
    id,
    capture_id: 1,
    signal_source: SOURCE[s.kind],
    observation_point: s.op,
    start_time_us: t0 + s.at,
    end_time_us: t0 + s.at + s.dur,
    duration_us: s.dur,
    node: s.node,
    pid: s.kind === 'N' ? null : (s.pid ?? 4211),
    tid: s.kind === 'N' ? null : (s.pid ?? 4211) + 2,
    process_name: s.kind === 'N' ? null : (s.process ?? null),
    container_id: null,
    netns: 4026531840,
    interface: s.iface ?? null,
    client_ip: '198.18.0.20',
    client_port: 40000 + (id % 20000),
    server_ip: '198.18.0.30',
    server_port: 8080,
    l4_protocol: 'tcp',
    l7_protocol: 'HTTP',
    version: '1.1',
    request_type: s.method ?? 'GET',
    request_domain: 'orders.internal',
    request_resource: path,
    endpoint: path.split('?')[0] ?? path,
    response_code: code,
    response_status: code >= 500 ? 'server_error' : code >= 400 ? 'client_error' : 'ok',
    response_exception: code >= 500 ? 'Bad Gateway' : null,
    request_length: 312,
    response_length: 1834,
    x_request_id_0: 'a3f1c2d4-0001-4b8e-9d21-a1b2c3d4e5f6',
    x_request_id_1: 'a3f1c2d4-0001-4b8e-9d21-a1b2c3d4e5f6',
    trace_id: s.kind === 'A' ? traceId : null,
    span_id: s.kind === 'A' ? id.toString(16).padStart(16, '0') : null,
    parent_span_id: null,
    syscall_trace_id_request: s.kind === 'S' ? 7_000_000 + id : null,
    syscall_trace_id_response: s.kind === 'S' ? 7_000_000 + id : null,
    req_tcp_seq: s.kind === 'A' ? null : 1_000_000 + id * 977,
    resp_tcp_seq: s.kind === 'A' ? null : 2_000_000 + id * 977,
    app_service: s.service ?? null,
    app_instance: s.instance ?? null,
    attributes: s.kind === 'A' ? { 'http.route': path.split('?')[0] } : null,
  };
}

/** Turns a sketch tree into an assembled Trace, computing depth and self time. */
export function buildTrace(root: SpanSketch, t0Us = 1_763_700_000_000_000): Trace {
  let nextId = 1;
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  let spanCount = 0;
  let endUs = t0Us;
  const build = (s: SpanSketch, depth: number, parent: TraceNode | null): TraceNode => {
    const span = storedSpan(s, nextId++, t0Us, traceId);
    spanCount++;
    const node: TraceNode = {
      span,
      kind: s.kind,
      linkedBy: parent ? (s.kind === 'A' ? 'trace_id' : s.kind === 'N' ? 'tcp_seq' : 'syscall_trace_id') : 'start',
      linkedFrom: parent ? parent.span.id : null,
      depth,
      selfTimeUs: 0,
      renderStartUs: span.start_time_us,
      renderEndUs: span.end_time_us,
      children: [],
    };
    endUs = Math.max(endUs, node.renderEndUs);
    node.children = (s.children ?? []).map((c) => build(c, depth + 1, node));
    // Self time: duration minus the union of the children's intervals inside it.
    const iv = node.children
      .map((c) => [Math.max(c.renderStartUs, node.renderStartUs), Math.min(c.renderEndUs, node.renderEndUs)])
      .filter(([a, b]) => b! > a!)
      .sort((a, b) => a[0]! - b[0]!);
    let covered = 0;
    let curA = -1;
    let curB = -1;
    for (const [a, b] of iv as [number, number][]) {
      if (a > curB) {
        if (curB > curA) covered += curB - curA;
        curA = a;
        curB = b;
      } else curB = Math.max(curB, b);
    }
    if (curB > curA) covered += curB - curA;
    node.selfTimeUs = Math.max(0, s.dur - covered);
    return node;
  };
  const r = build(root, 0, null);
  return {
    startSpanId: r.span.id,
    roots: [r],
    spanCount,
    startUs: t0Us,
    endUs,
    rounds: 4,
    truncated: false,
    conflicts: {},
    pruned: 0,
    skew: [],
  };
}

/**
 * One upstream call as DeepFlow nests it: the caller's S c-p, the N spans on the
 * caller's and callee's NICs, the callee's S s-p, and its A server span with `inner`.
 */
export function upstreamCall(o: {
  at: number;
  dur: number;
  from: { node: string; process: string; pid: number };
  to: { node: string; process: string; pid: number; service: string };
  method: string;
  path: string;
  code?: number;
  inner?: SpanSketch[];
}): SpanSketch {
  const net = 120; // µs on the wire each way
  const code = o.code ?? 200;
  const common = { method: o.method, path: o.path, code };
  return {
    kind: 'S',
    op: 'c-p',
    at: o.at,
    dur: o.dur,
    node: o.from.node,
    process: o.from.process,
    pid: o.from.pid,
    ...common,
    children: [
      {
        kind: 'N',
        op: 'c',
        at: o.at + 30,
        dur: o.dur - 60,
        node: o.from.node,
        iface: 'eth0',
        ...common,
        children: [
          {
            kind: 'N',
            op: 's',
            at: o.at + 30 + net,
            dur: o.dur - 60 - 2 * net,
            node: o.to.node,
            iface: 'eth0',
            ...common,
            children: [
              {
                kind: 'S',
                op: 's-p',
                at: o.at + 60 + net,
                dur: o.dur - 120 - 2 * net,
                node: o.to.node,
                process: o.to.process,
                pid: o.to.pid,
                ...common,
                children: [
                  {
                    kind: 'A',
                    op: 's-app',
                    at: o.at + 90 + net,
                    dur: o.dur - 180 - 2 * net,
                    node: o.to.node,
                    process: o.to.process,
                    pid: o.to.pid,
                    service: o.to.service,
                    instance: `${o.to.service}-${o.to.pid}`,
                    ...common,
                    children: o.inner ?? [],
                  },
                ],
              },
            ],
          },
        ],
      },
    ],
  };
}

const GW = { node: 'gw-1', process: 'nginx', pid: 4211 };
const ORDERS = { node: 'svc-a', process: 'node', pid: 812, service: 'orders' };
const INVENTORY = { node: 'svc-b', process: 'java', pid: 1290, service: 'inventory' };
const PRICING = { node: 'svc-b', process: 'python3', pid: 1377, service: 'pricing' };
const PAYMENTS = { node: 'svc-c', process: 'payments-api', pid: 2230, service: 'payments' };

function appSpan(at: number, dur: number, svc: typeof ORDERS, name: string): SpanSketch {
  return {
    kind: 'A',
    op: 'app',
    at,
    dur,
    node: svc.node,
    process: svc.process,
    pid: svc.pid,
    service: svc.service,
    instance: `${svc.service}-${svc.pid}`,
    method: 'INTERNAL',
    path: name,
  };
}

/**
 * A checkout through the gateway: orders calls inventory and pricing at the same time,
 * waits (a gap), then calls payments, which fails with 502. 31 spans, ~48 ms.
 */
export function checkoutTrace(t0Us?: number): Trace {
  const orders = ORDERS;
  const root: SpanSketch = {
    kind: 'S',
    op: 's-p',
    at: 0,
    dur: 48_000,
    node: GW.node,
    process: GW.process,
    pid: GW.pid,
    method: 'POST',
    path: '/api/v1/checkout',
    code: 502,
    children: [
      upstreamCall({
        at: 400,
        dur: 47_000,
        from: GW,
        to: orders,
        method: 'POST',
        path: '/checkout',
        code: 502,
        inner: [
          appSpan(1_000, 1_800, orders, 'validate cart'),
          upstreamCall({
            at: 3_000,
            dur: 14_000,
            from: orders,
            to: INVENTORY,
            method: 'GET',
            path: '/stock?sku=1234',
          }),
          upstreamCall({
            at: 3_200,
            dur: 9_000,
            from: orders,
            to: PRICING,
            method: 'GET',
            path: '/price?sku=1234',
          }),
          upstreamCall({
            at: 24_000,
            dur: 21_000,
            from: orders,
            to: PAYMENTS,
            method: 'POST',
            path: '/charge',
            code: 502,
          }),
        ],
      }),
    ],
  };
  return buildTrace(root, t0Us);
}

/**
 * A large trace of at least `spans` spans (default 5,000: 5,001): the gateway fans
 * out to upstream calls in overlapping waves with gaps between them; each call is a
 * 5-span S/N/S/A chain with 15 A spans inside (sequential steps, some concurrent).
 */
export function largeTrace(spans = 5_000, t0Us?: number): Trace {
  // 1 root + calls × (5 + 14 + 1) spans.
  const calls = Math.max(1, Math.ceil((spans - 1) / 20));
  const services = [ORDERS, INVENTORY, PRICING, PAYMENTS];
  const children: SpanSketch[] = [];
  let rnd = 42;
  const rand = (): number => {
    rnd = (rnd * 1103515245 + 12345) & 0x7fffffff;
    return rnd / 0x7fffffff;
  };
  let t = 500;
  for (let i = 0; i < calls; i++) {
    if (i % 8 === 0 && i > 0) t += 6_000 + Math.floor(rand() * 8_000); // a gap between waves
    const at = t + (i % 8) * 700;
    const dur = 8_000 + Math.floor(rand() * 30_000);
    const to = services[i % services.length]!;
    const innerStart = at + 400;
    const innerRoom = dur - 900;
    const step = Math.floor(innerRoom / 16);
    const inner: SpanSketch[] = [];
    for (let k = 0; k < 14; k++) {
      // Two pairs of concurrent steps per call; the rest sequential.
      const overlap = k === 5 || k === 11 ? -Math.floor(step / 2) : 0;
      inner.push(appSpan(innerStart + k * step + overlap, Math.floor(step * 0.9), to, `step ${k}`));
    }
    const last = inner[13]!;
    last.children = [appSpan(last.at + 50, Math.floor(step * 0.5), to, 'db query')];
    children.push(
      upstreamCall({ at, dur, from: GW, to, method: i % 3 ? 'GET' : 'POST', path: `/api/v1/items/${i}`, inner }),
    );
    if (i % 8 === 7) t = at + dur;
  }
  const end = Math.max(...children.map((c) => c.at + c.dur)) + 400;
  return buildTrace(
    {
      kind: 'S',
      op: 's-p',
      at: 0,
      dur: end,
      node: GW.node,
      process: GW.process,
      pid: GW.pid,
      method: 'GET',
      path: '/api/v1/batch',
      children,
    },
    t0Us,
  );
}
