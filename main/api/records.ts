// The record model of DESIGN.md, as TypeScript types. Field names are DeepFlow's
// (`l7_flow_log`) and are the names used in SQLite columns, in collector frames and
// in `--json` output. Nothing here imports Node or Electron: the renderer uses it too.

export type SignalSource = 'ebpf' | 'packet' | 'otel';

export type ObservationPoint =
  'c-p' | 's-p' | 'c' | 's' | 'c-nd' | 's-nd' | 'local' | 'rest' | 'c-app' | 's-app' | 'app';

export type ResponseStatus = 'ok' | 'client_error' | 'server_error' | 'timeout' | 'unknown';

/** One observation of one request/response exchange at one observation point. */
export interface Span {
  signal_source: SignalSource;
  observation_point: ObservationPoint;
  start_time_us: number;
  end_time_us: number;
  duration_us: number;
  node: string | null;
  pid: number | null;
  tid: number | null;
  process_name: string | null;
  container_id: string | null;
  netns: number | null;
  interface: string | null;
  client_ip: string | null;
  client_port: number | null;
  server_ip: string | null;
  server_port: number | null;
  l4_protocol: string | null;
  l7_protocol: string | null;
  version: string | null;
  request_type: string | null;
  request_domain: string | null;
  request_resource: string | null;
  endpoint: string | null;
  response_code: number | null;
  response_status: ResponseStatus;
  response_exception: string | null;
  request_length: number | null;
  response_length: number | null;
  x_request_id_0: string | null;
  x_request_id_1: string | null;
  trace_id: string | null;
  span_id: string | null;
  parent_span_id: string | null;
  syscall_trace_id_request: number | null;
  syscall_trace_id_response: number | null;
  req_tcp_seq: number | null;
  resp_tcp_seq: number | null;
  app_service: string | null;
  app_instance: string | null;
  attributes: Record<string, unknown> | null;
  /** Read as plaintext from the TLS library (DeepFlow's `is_tls`); null when the
   * source does not say (collectors before TLS support). Optional in frames. */
  is_tls?: boolean | null;
}

/** Every span field, in schema column order. The store and the CLI both use it. */
export const SPAN_FIELDS = [
  'signal_source',
  'observation_point',
  'start_time_us',
  'end_time_us',
  'duration_us',
  'node',
  'pid',
  'tid',
  'process_name',
  'container_id',
  'netns',
  'interface',
  'client_ip',
  'client_port',
  'server_ip',
  'server_port',
  'l4_protocol',
  'l7_protocol',
  'version',
  'request_type',
  'request_domain',
  'request_resource',
  'endpoint',
  'response_code',
  'response_status',
  'response_exception',
  'request_length',
  'response_length',
  'x_request_id_0',
  'x_request_id_1',
  'trace_id',
  'span_id',
  'parent_span_id',
  'syscall_trace_id_request',
  'syscall_trace_id_response',
  'req_tcp_seq',
  'resp_tcp_seq',
  'app_service',
  'app_instance',
  'attributes',
  'is_tls',
] as const satisfies readonly (keyof Span)[];

/**
 * One L4 flow (one TCP connection at one observation point), as the collector's
 * `flow` frame carries it (remote-collector/STREAM.md). `tx` is client → server.
 */
export interface Flow {
  flow_id: number;
  signal_source: SignalSource;
  observation_point: ObservationPoint;
  node: string | null;
  netns: number | null;
  interface: string | null;
  client_ip: string | null;
  client_port: number | null;
  server_ip: string | null;
  server_port: number | null;
  l4_protocol: string | null;
  start_time_us: number;
  end_time_us: number;
  duration_us: number;
  packet_tx: number;
  packet_rx: number;
  byte_tx: number;
  byte_rx: number;
  connect_latency_us: number | null;
  srtt_us: number | null;
  retrans_tx: number;
  retrans_rx: number;
  rst_tx: number;
  rst_rx: number;
  zero_win_tx: number;
  zero_win_rx: number;
  close_reason: string | null;
  final: boolean;
}

/** Every flow field, in schema column order. */
export const FLOW_FIELDS = [
  'flow_id',
  'signal_source',
  'observation_point',
  'node',
  'netns',
  'interface',
  'client_ip',
  'client_port',
  'server_ip',
  'server_port',
  'l4_protocol',
  'start_time_us',
  'end_time_us',
  'duration_us',
  'packet_tx',
  'packet_rx',
  'byte_tx',
  'byte_rx',
  'connect_latency_us',
  'srtt_us',
  'retrans_tx',
  'retrans_rx',
  'rst_tx',
  'rst_rx',
  'zero_win_tx',
  'zero_win_rx',
  'close_reason',
  'final',
] as const satisfies readonly (keyof Flow)[];

/** A flow as stored: the record plus its row id and capture. */
export interface StoredFlow extends Flow {
  id: number;
  capture_id: number;
}

/** A network namespace of the node, with its interfaces (the collector's `netns` frame). */
export interface NetnsRecord {
  netns: number;
  names: string[];
  host: boolean;
  interfaces: {
    ifindex: number;
    name: string;
    kind: string | null;
    link: number | null;
    loopback: boolean;
    addresses: string[];
  }[];
}

/** A span as stored: the record plus its row id and the capture it belongs to. */
export interface StoredSpan extends Span {
  id: number;
  capture_id: number;
}
