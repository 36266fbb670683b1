// The assembled trace: what `tapdeck trace --json` prints and what the flame graph
// draws. Traces are not stored; main/trace assembles them on demand from spans.
// Free of Node and Electron imports: the renderer uses these types.

import type { StoredSpan } from './records.ts';

/** How the search reached a span from one already in the trace. */
export type LinkRule = 'start' | 'trace_id' | 'span_id' | 'x_request_id' | 'syscall_trace_id' | 'tcp_seq';

export type TraceStart = { requestId: string } | { traceId: string } | { spanId: number };

export interface TraceNode {
  /** Every record field of the span, plus its row id. */
  span: StoredSpan;
  /** Signal letter for the flame graph: A (otel), S (ebpf), N (packet). */
  kind: 'A' | 'S' | 'N';
  /** The rule that first linked this span into the trace, and the span id it linked from. */
  linkedBy: LinkRule;
  linkedFrom: number | null;
  /** 0 for roots. */
  depth: number;
  /** duration minus the union of its children's intervals, µs, never negative. */
  selfTimeUs: number;
  /** Start and end after clock-skew correction, µs since epoch; what is drawn. */
  renderStartUs: number;
  renderEndUs: number;
  children: TraceNode[];
}

export interface TraceSkew {
  node: string;
  /** Added to this node's timestamps to put them on the start span's clock, µs. */
  offsetUs: number;
}

export interface Trace {
  /** The span the search started from. */
  startSpanId: number;
  /** Roots, ordered by render start. Usually one. */
  roots: TraceNode[];
  /** Spans in the tree. */
  spanCount: number;
  startUs: number;
  endUs: number;
  /** Search rounds used, and whether the round limit or the span limit stopped it. */
  rounds: number;
  truncated: boolean;
  /** Candidates rejected for a conflict, by reason (e.g. `x_request_id`, `status`). */
  conflicts: Record<string, number>;
  /** Spans found by the search but not placed in the start span's tree. */
  pruned: number;
  skew: TraceSkew[];
}
