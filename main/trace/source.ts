// What trace assembly needs from a capture file: spans looked up by the keys the
// search follows. main/store/db.ts implements it over SQLite (indexed lookups); the
// assembly itself is plain code over these results.

import type { StoredSpan } from '../api/records.ts';

export interface TraceSource {
  /** Spans by row id. */
  byIds(ids: readonly number[]): StoredSpan[];
  /** Spans whose `x_request_id_0` or `x_request_id_1` is one of `ids`. */
  byXRequestIds(ids: readonly string[], limit: number): StoredSpan[];
  byTraceIds(ids: readonly string[], limit: number): StoredSpan[];
  /** Spans whose `span_id` is one of `ids`. */
  bySpanIds(ids: readonly string[], limit: number): StoredSpan[];
  /** Spans whose `parent_span_id` is one of `ids`. */
  byParentSpanIds(ids: readonly string[], limit: number): StoredSpan[];
  /** Spans whose `syscall_trace_id_request` or `_response` is one of `ids`. */
  bySyscallTraceIds(ids: readonly number[], limit: number): StoredSpan[];
  /** Spans whose `req_tcp_seq` is one of `seqs`. */
  byReqTcpSeqs(seqs: readonly number[], limit: number): StoredSpan[];
}
