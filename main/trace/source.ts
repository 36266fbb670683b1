// What trace assembly needs from a capture file: spans looked up by the keys the
// search follows. main/store/db.ts implements it over SQLite (indexed lookups); the
// assembly itself is plain code over these results.

import type { StoredSpan } from '../api/records.ts';

export interface TraceSource {
  /** Spans by row id. */
  byIds(ids: readonly number[]): StoredSpan[];
  /** The earliest span (lowest row id on ties) carrying this X-Request-ID / trace id. */
  firstByXRequestId(id: string): number | null;
  firstByTraceId(id: string): number | null;
  // The lookups below return row ids only (served from the index alone): the search
  // fetches whole rows just for ids it has not seen yet.
  /** Rows whose `x_request_id_0` or `x_request_id_1` is one of `ids`. */
  idsByXRequestIds(ids: readonly string[], limit: number): number[];
  idsByTraceIds(ids: readonly string[], limit: number): number[];
  /** Rows whose `span_id` is one of `ids`. */
  idsBySpanIds(ids: readonly string[], limit: number): number[];
  /** Rows whose `parent_span_id` is one of `ids`. */
  idsByParentSpanIds(ids: readonly string[], limit: number): number[];
  /** Rows whose `syscall_trace_id_request` or `_response` is one of `ids`. */
  idsBySyscallTraceIds(ids: readonly number[], limit: number): number[];
  /** Rows whose `req_tcp_seq` is one of `seqs`. */
  idsByReqTcpSeqs(seqs: readonly number[], limit: number): number[];
}
