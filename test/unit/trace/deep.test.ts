// Pathological traces: chains of A spans, each the parent of the next, walked with the
// round limit lifted. Assembly must not overflow the stack, and what it returns must
// survive JSON and structured clone (which recurse): deeper than MAX_TRACE_DEPTH, the
// tree is cut around the start span and the cut is reported.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Span } from '../../../main/api/records.ts';
import { MAX_TRACE_DEPTH, type Trace } from '../../../main/api/trace.ts';
import { Store } from '../../../main/store/store.ts';
import { app, store, T0 } from './fixtures.ts';

describe('deep traces', () => {
  const chain = (n: number, traceId: string | null = null): Span[] => {
    const spans: Span[] = [];
    for (let i = 0; i < n; i++)
      spans.push(
        app({ span_id: `s${i}`, parent_span_id: i ? `s${i - 1}` : null, trace_id: traceId, at: i, dur: 2 * n - 2 * i }),
      );
    return spans;
  };
  const depthOf = (t: Trace): number => {
    let depth = 0;
    for (let n = t.roots[0]; n; n = n.children[0]) depth = n.depth;
    return depth;
  };

  it('assembles a 1,000-deep chain whole, and it survives JSON and the worker', async () => {
    const spans = chain(MAX_TRACE_DEPTH);
    const f = store(spans);
    expect(f.trace({ spanId: f.id(500) }).spanCount).toBe(61); // 30 rounds up, 30 down
    const t = f.trace({ spanId: f.id(500) }, { maxRounds: 2_000 });
    expect(t).toMatchObject({ spanCount: 1000, truncated: false, pruned: 0 });
    expect(t.beyondDepthLimit).toBeUndefined();
    expect(depthOf(t)).toBe(999);
    expect((JSON.parse(JSON.stringify(t)) as Trace).spanCount).toBe(1000);

    // through the store worker (structured clone of the result): one trace id, one round
    const dir = mkdtempSync(join(tmpdir(), 'td-trace-deep-'));
    const s = await Store.open(join(dir, 'c.sqlite'));
    try {
      s.appendSpans(await s.createCapture({ target: 'x', startedAtUs: T0 }), chain(MAX_TRACE_DEPTH, 't1'));
      const viaWorker = await s.trace({ traceId: 't1' });
      expect(viaWorker.spanCount).toBe(1000);
      expect(depthOf(viaWorker)).toBe(999);
    } finally {
      await s.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('cuts a 10,000-deep chain around the start span, and says so', () => {
    const f = store(chain(10_000));
    const t = f.trace({ spanId: f.id(5_000) }, { maxRounds: 10_000 });
    expect(t.spanCount + (t.beyondDepthLimit ?? 0) + t.pruned).toBe(10_000);
    expect(t.spanCount).toBe(MAX_TRACE_DEPTH);
    expect(t.truncated).toBe(true);
    expect(t.roots[0]!.span.id).toBe(f.id(5_000 - MAX_TRACE_DEPTH / 2));
    expect(depthOf(t)).toBe(MAX_TRACE_DEPTH - 1);
    expect(JSON.stringify(t).length).toBeGreaterThan(0);
  });
});
