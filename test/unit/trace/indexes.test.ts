// Every lookup of the trace search is served by an index (schema migration 2 and the
// request-log indexes of migration 1), never by a scan of the spans table.

import { describe, expect, it } from 'vitest';
import { openDb } from '../../../main/store/db.ts';

const LOOKUPS: [string, string][] = [
  ['x_request_id_0', 'spans_by_xrid0'],
  ['x_request_id_1', 'spans_by_xrid1'],
  ['trace_id', 'spans_by_trace'],
  ['span_id', 'spans_by_span_id'],
  ['parent_span_id', 'spans_by_parent_span_id'],
  ['syscall_trace_id_request', 'spans_by_syscall_req'],
  ['syscall_trace_id_response', 'spans_by_syscall_resp'],
  ['req_tcp_seq', 'spans_by_req_tcp_seq'],
];

describe('trace lookups use indexes', () => {
  it.each(LOOKUPS)('by %s: %s, index only', (col, index) => {
    const db = openDb(':memory:');
    const plan = (
      db
        .prepare(`EXPLAIN QUERY PLAN SELECT id FROM spans WHERE ${col} IN (SELECT value FROM json_each(?)) LIMIT ?`)
        .all('[]', 10) as { detail: string }[]
    )
      .map((r) => r.detail)
      .join(' | ');
    expect(plan).toMatch(new RegExp(`SEARCH spans USING (COVERING )?INDEX ${index} \\(${col}=\\?\\)`));
    expect(plan).not.toMatch(/SCAN spans/);
    db.close();
  });
});
