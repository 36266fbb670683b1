// Assembly as a whole: clock-skew correction, pruning, cycles, self time, render
// times, and the store worker's `trace` request with its not_found error.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Span } from '../../../main/api/records.ts';
import { CodedError } from '../../../main/errors.ts';
import { Store } from '../../../main/store/store.ts';
import { app, nodeOf, nodes, sp, store, T0 } from './fixtures.ts';

const hop = { client_ip: '10.0.0.1', client_port: 41000, server_ip: '10.0.0.2', server_port: 8080 };
const seq = { req_tcp_seq: 777, resp_tcp_seq: 888 };

describe('clock skew', () => {
  /** The gateway (node n1) calls svca on node n2, whose clock is `ahead` µs ahead. */
  function twoNodes(ahead: number): Span[] {
    return [
      sp({ node: 'n1', at: 0, dur: 12_000, x_request_id_1: 'r1' }),
      sp({ node: 'n1', ...hop, ...seq, observation_point: 'c-p', at: 1_000, dur: 10_000, x_request_id_0: 'r1' }),
      sp({ node: 'n2', ...hop, ...seq, pid: 7, at: 2_000 + ahead, dur: 8_000, x_request_id_0: 'r1' }),
      sp({
        node: 'n2',
        pid: 7,
        observation_point: 'c-p',
        at: 3_000 + ahead,
        dur: 2_000,
        x_request_id_0: 'r1',
        request_domain: 'db',
      }),
    ];
  }

  it('moves a node whose clock runs ahead so its server span lies inside the client span', () => {
    const f = store(twoNodes(50_000));
    const t = f.trace({ requestId: 'r1' });
    // the least correction that puts n2's span [52 ms, 60 ms] inside n1's [1 ms, 11 ms]
    expect(t.skew).toEqual([
      { node: 'n1', offsetUs: 0 },
      { node: 'n2', offsetUs: -49_000 },
    ]);
    const server = nodeOf(t, f.id(2))!;
    expect(server.depth).toBe(2);
    expect(server.renderStartUs - T0).toBe(3_000);
    expect(server.renderEndUs - T0).toBe(11_000);
    expect(server.span.start_time_us - T0).toBe(52_000); // the record keeps what the node said
    // the rest of n2 moves with it, and stays inside its parent
    expect(nodeOf(t, f.id(3))).toMatchObject({ depth: 3, renderStartUs: T0 + 4_000, renderEndUs: T0 + 6_000 });
    expect(t.endUs - t.startUs).toBe(12_000);
  });

  it('moves a node whose clock runs behind, from the other side', () => {
    const f = store(twoNodes(-30_000));
    const t = f.trace({ spanId: f.id(2) }); // start on n2: n1 is corrected instead
    expect(t.skew).toEqual([
      { node: 'n1', offsetUs: -29_000 },
      { node: 'n2', offsetUs: 0 },
    ]);
    const client = nodeOf(t, f.id(1))!;
    const server = nodeOf(t, f.id(2))!;
    expect(client.renderStartUs).toBeLessThanOrEqual(server.renderStartUs);
    expect(client.renderEndUs).toBeGreaterThanOrEqual(server.renderEndUs);
  });

  it('leaves clocks that already agree alone', () => {
    const t = store(twoNodes(0)).trace({ requestId: 'r1' });
    expect(t.skew.every((s) => s.offsetUs === 0)).toBe(true);
    expect(nodes(t).every((n) => n.renderStartUs === n.span.start_time_us)).toBe(true);
  });
});

describe('pruning, cycles, self time', () => {
  it("prunes spans the search found that do not belong to the start span's tree", () => {
    const f = store([
      sp({ at: 0, dur: 1_000, x_request_id_1: 'r1' }),
      sp({ at: 500, dur: 100, observation_point: 'c-p', x_request_id_0: 'r1', request_domain: 'up' }),
      // a minute later a client sends the same X-Request-ID again: another request
      sp({ at: 60_000_000, dur: 1_000, x_request_id_1: 'r1' }),
      sp({ at: 60_000_500, dur: 100, observation_point: 'c-p', x_request_id_0: 'r1', request_domain: 'up' }),
    ]);
    const t = f.trace({ requestId: 'r1' });
    expect(t.spanCount).toBe(2);
    expect(t.pruned).toBe(2);
    expect(t.roots).toHaveLength(1);
    expect(nodes(t).map((n) => n.span.id)).toEqual([f.id(0), f.id(1)]);
    const later = f.trace({ spanId: f.id(3) });
    expect(nodes(later).map((n) => n.span.id)).toEqual([f.id(2), f.id(3)]);
  });

  it('assembles a trace whose links form a cycle, once each, and counts the refused link', () => {
    const f = store([
      app({ span_id: 'a', parent_span_id: 'b', at: 0, dur: 1_000 }),
      app({ span_id: 'b', parent_span_id: 'c', at: 100, dur: 500 }),
      app({ span_id: 'c', parent_span_id: 'a', at: 200, dur: 100 }),
      app({ span_id: 'd', parent_span_id: 'd', at: 300, dur: 10, x_request_id_0: 'x' }),
      app({ span_id: 'e', parent_span_id: 'c', at: 250, dur: 100, x_request_id_0: 'x', observation_point: 'c-app' }),
    ]);
    const t = f.trace({ spanId: f.id(0) });
    expect(t.spanCount + t.pruned).toBe(5);
    expect(new Set(nodes(t).map((n) => n.span.id)).size).toBe(t.spanCount);
    expect(t.conflicts['cycle']).toBe(2); // the a→b→c→a loop and d's own parent id
    expect(t.spanCount).toBe(5);
  });

  it('computes self time as duration minus the union of the children, clipped to the parent', () => {
    const child = (at: number, dur: number): Span =>
      sp({ at, dur, observation_point: 'c-p', x_request_id_0: 'r1', request_domain: `up${at}` });
    const f = store([
      sp({ at: 0, dur: 1_000, x_request_id_1: 'r1' }),
      child(100, 300), // 100..400
      child(300, 300), // 300..600, overlaps the first
      child(900, 50), // 900..950
    ]);
    const t = f.trace({ requestId: 'r1' });
    expect(t.roots[0]!.selfTimeUs).toBe(1_000 - 500 - 50);
    expect(nodeOf(t, f.id(1))!.selfTimeUs).toBe(300);
    // children ordered by start
    expect(t.roots[0]!.children.map((c) => c.span.id)).toEqual([f.id(1), f.id(2), f.id(3)]);
  });

  it('never reports a negative self time when children cover more than the parent', () => {
    const f = store([
      sp({ at: 0, dur: 1_000, x_request_id_1: 'r1' }),
      sp({ at: 0, dur: 1_000, observation_point: 'c-p', x_request_id_0: 'r1', request_domain: 'a' }),
      sp({ at: 0, dur: 1_000, observation_point: 'c-p', x_request_id_0: 'r1', request_domain: 'b' }),
    ]);
    expect(f.trace({ requestId: 'r1' }).roots[0]!.selfTimeUs).toBe(0);
  });
});

describe('errors and the store worker', () => {
  it('says what to do when nothing matches, with code not_found', () => {
    const f = store([sp({ x_request_id_1: 'r1' })]);
    for (const start of [{ requestId: 'nope' }, { traceId: 'nope' }, { spanId: 999 }]) {
      let err: unknown;
      try {
        f.trace(start);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CodedError);
      expect(err).toMatchObject({ code: 'not_found' });
      expect((err as Error).message).toMatch(/^(No span in this capture file has|There is no span) .*: (check|take) /);
    }
  });

  it('runs in the store worker: store.trace resolves the tree, or rejects with not_found', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'td-trace-'));
    const s = await Store.open(join(dir, 'c.sqlite'));
    try {
      const cap = await s.createCapture({ target: 'root@n1', startedAtUs: T0 });
      s.appendSpans(cap, [
        sp({ at: 0, dur: 1_000, x_request_id_1: 'r1' }),
        sp({ at: 100, dur: 500, observation_point: 'c-p', x_request_id_0: 'r1', request_domain: 'up' }),
      ]);
      // not flushed on purpose: the trace request writes pending spans first
      const t = await s.trace({ requestId: 'r1' });
      expect(t.spanCount).toBe(2);
      expect(t.roots[0]!.children[0]!.span.observation_point).toBe('c-p');
      await expect(s.trace({ requestId: 'r2' })).rejects.toMatchObject({ code: 'not_found', status: 404 });
      await expect(s.trace({ requestId: 'r2' })).rejects.toBeInstanceOf(CodedError);
    } finally {
      await s.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
