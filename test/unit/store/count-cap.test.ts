// The request log's total: exact up to COUNT_CAP, then "more than COUNT_CAP".

import { describe, expect, it } from 'vitest';
import { COUNT_CAP } from '../../../main/api/contract.ts';
import { createCapture, insertSpans, openDb, querySpans } from '../../../main/store/db.ts';
import { sp } from '../trace/fixtures.ts';

describe('request log total', () => {
  it('counts exactly up to the cap and flags more than the cap', () => {
    const db = openDb(':memory:');
    try {
      const c = createCapture(db, { target: 'u@h', startedAtUs: 1 });
      const spans = Array.from({ length: COUNT_CAP + 3 }, (_, i) =>
        sp({ at: i, request_type: i < COUNT_CAP ? 'GET' : 'POST', response_status: i % 2 ? 'ok' : 'server_error' }),
      );
      insertSpans(db, c, spans);
      const all = querySpans(db, { limit: 5 });
      expect(all).toMatchObject({ total: COUNT_CAP, totalCapped: true });
      expect(all.rows.map((r) => r.start_time_us)).toEqual(
        spans
          .slice(-5)
          .reverse()
          .map((s) => s.start_time_us),
      );
      // Exactly COUNT_CAP matches: exact, not capped.
      const get = querySpans(db, { method: 'GET', limit: 1 });
      expect(get.total).toBe(COUNT_CAP);
      expect(get.totalCapped).toBeUndefined();
      expect(querySpans(db, { method: 'POST' })).toMatchObject({ total: 3 });
      expect(querySpans(db, { status: 'server_error' }).total).toBe((COUNT_CAP + 4) / 2);
    } finally {
      db.close();
    }
  });
});
