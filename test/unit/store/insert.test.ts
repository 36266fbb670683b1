// The batched insert path (spanValues → JSON → worker → multi-row INSERT): every field
// of every span comes back as it went in, whatever the batch size, through the Store.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Span } from '../../../main/api/records.ts';
import { Store } from '../../../main/store/store.ts';
import { sp } from '../trace/fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'td-insert-'));

describe('span inserts', () => {
  it('stores every field of 37 spans (two 16-row statements and five single rows) unchanged', async () => {
    const store = await Store.open(join(dir, 'a.sqlite'));
    try {
      const id = await store.createCapture({ target: 'u@h', startedAtUs: 1 });
      const sent: Span[] = Array.from({ length: 37 }, (_, i) =>
        sp({
          at: i,
          dur: 7,
          request_type: 'GET',
          netns: 4026531840,
          request_resource: `/p/${i}?q=é`,
          x_request_id_0: `x-${i}`,
          x_request_id_1: i % 3 ? `x-${i}` : null,
          trace_id: i % 2 ? `${i}`.padStart(32, 'a') : null,
          req_tcp_seq: 4_294_967_295 - i,
          attributes: i % 4 ? null : { 'http.route': '/p/:id', n: i },
          is_tls: i % 5 === 0 ? true : i % 5 === 1 ? false : null,
        }),
      );
      store.appendSpans(id, sent.slice(0, 20));
      store.appendSpans(id, sent.slice(20));
      await store.flush();
      const page = await store.querySpans({ captureId: id, limit: 100 });
      expect(page.total).toBe(37);
      const back = [...page.rows].reverse();
      for (let i = 0; i < 37; i++) {
        const { id: rowId, capture_id, ...fields } = back[i]!;
        expect(rowId).toBeGreaterThan(0);
        expect(capture_id).toBe(id);
        expect(fields).toEqual({ ...sent[i], is_tls: sent[i]!.is_tls ?? null });
      }
      expect((await store.getCapture(id))?.stats.spans).toBe(37);
    } finally {
      await store.close();
    }
  });
});
