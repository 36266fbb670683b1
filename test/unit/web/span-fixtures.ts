// Realistic spans for the web bridge and browser tests: a gateway (nginx as Kong would
// run it) seen as server (s-p) and as client (c-p) of its upstreams.

import type { Span } from '../../../main/api/records.ts';

export interface SpanSpec {
  op: 's-p' | 'c-p';
  method: string;
  path: string;
  code: number | null;
  xrid: string;
  startUs: number;
  durationUs: number;
  host?: string;
  process?: string;
  pid?: number;
}

const statusOf = (code: number | null): Span['response_status'] =>
  code === null ? 'timeout' : code >= 500 ? 'server_error' : code >= 400 ? 'client_error' : 'ok';

export function makeSpan(s: SpanSpec): Span {
  const server = s.op === 's-p';
  return {
    signal_source: 'ebpf',
    observation_point: s.op,
    start_time_us: s.startUs,
    end_time_us: s.startUs + s.durationUs,
    duration_us: s.durationUs,
    node: 'gw-1',
    pid: s.pid ?? 4211,
    tid: (s.pid ?? 4211) + 3,
    process_name: s.process ?? 'nginx',
    container_id: null,
    netns: 4026531840,
    interface: null,
    client_ip: server ? '198.18.0.10' : '198.18.1.1',
    client_port: server ? 51234 : 40312,
    server_ip: server ? '198.18.1.1' : '198.18.2.20',
    server_port: server ? 8000 : 8080,
    l4_protocol: 'tcp',
    l7_protocol: 'HTTP',
    version: '1.1',
    request_type: s.method,
    request_domain: s.host ?? (server ? 'api.shop.example' : 'orders.internal'),
    request_resource: s.path,
    endpoint: s.path.split('?')[0] ?? s.path,
    response_code: s.code,
    response_status: statusOf(s.code),
    response_exception: s.code === 502 ? 'Bad Gateway' : null,
    request_length: s.method === 'POST' ? 512 : 0,
    response_length: 1834,
    x_request_id_0: s.xrid,
    x_request_id_1: s.xrid,
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

/** `n` exchanges, each seen at s-p (gateway ← client) and c-p (gateway → upstream). */
export function gatewayTraffic(n: number, t0Us: number): Span[] {
  const routes: [string, string, number][] = [
    ['GET', '/api/v1/orders?page=1', 200],
    ['POST', '/api/v1/orders', 200],
    ['GET', '/api/v1/users/42', 404],
    ['GET', '/api/v1/inventory/sku-1234', 502],
    ['POST', '/api/v1/payments', 200],
  ];
  const spans: Span[] = [];
  for (let i = 0; i < n; i++) {
    const [method, path, code] = routes[i % routes.length]!;
    const xrid = `7f3c2a10-${String(i).padStart(4, '0')}-4b8e-9d21-a1b2c3d4e5f6`;
    const startUs = t0Us + i * 37_000;
    const upstream = 1_500 + ((i * 7919) % 40_000);
    spans.push(makeSpan({ op: 's-p', method, path, code, xrid, startUs, durationUs: upstream + 900 }));
    spans.push(makeSpan({ op: 'c-p', method, path, code, xrid, startUs: startUs + 400, durationUs: upstream }));
  }
  return spans;
}
