// What the trace view draws, from an assembled trace: bars on a time axis (concurrent
// siblings in separate lanes of their depth, gaps kept), labels and tooltips, colours
// per service, shares of self time, the ancestors of a clicked span, hit-testing, and
// the aggregated "where the time went" hierarchy.

import { describe, expect, it } from 'vitest';
import {
  aggregateSelfTime,
  barAt,
  barLabel,
  callInfo,
  instanceInfo,
  layoutTrace,
  NETWORK_COLOR,
  withAncestors,
  type Bar,
} from '../../../app/src/trace/model.ts';
import { buildTrace, checkoutTrace, largeTrace } from '../../support/trace-fixtures.ts';

const find = (bars: Bar[], kind: string, op: string, path: string): Bar => {
  const b = bars.find(
    (x) => x.node.kind === kind && x.node.span.observation_point === op && x.node.span.request_resource === path,
  );
  if (!b) throw new Error(`no ${kind} ${op} ${path}`);
  return b;
};

describe('trace layout', () => {
  const trace = checkoutTrace();
  const layout = layoutTrace(trace);

  it('places every span on the time axis from the trace start, depth first', () => {
    expect(layout.bars).toHaveLength(trace.spanCount);
    expect(layout.durationUs).toBe(48_000);
    const root = layout.bars[0]!;
    expect([root.x0, root.x1, root.depth, root.row, root.parent]).toEqual([0, 48_000, 0, 0, -1]);
    for (const b of layout.bars) {
      expect(b.x1 - b.x0).toBe(b.node.span.duration_us);
      if (b.parent >= 0) expect(layout.bars[b.parent]!.depth).toBe(b.depth - 1);
    }
  });

  it('gives concurrent siblings their own lanes and keeps the gap before the next call', () => {
    const stock = find(layout.bars, 'S', 'c-p', '/stock?sku=1234');
    const price = find(layout.bars, 'S', 'c-p', '/price?sku=1234');
    const charge = find(layout.bars, 'S', 'c-p', '/charge');
    expect(stock.depth).toBe(price.depth);
    // Overlapping in time: two lanes of the same depth.
    expect(stock.x0 < price.x1 && price.x0 < stock.x1).toBe(true);
    expect(stock.row).not.toBe(price.row);
    expect(Math.abs(stock.row - price.row)).toBe(1);
    // The payments call starts after both returned: the gap stays on the axis, and it
    // reuses the first free lane.
    expect(charge.x0 - Math.max(stock.x1, price.x1)).toBe(24_000 - 17_000);
    expect(charge.row).toBe(stock.row);
    // The lanes of one depth sit together, before the next depth's.
    expect(layout.depthRow[stock.depth + 1]).toBe(Math.max(stock.row, price.row) + 1);
  });

  it('never overlaps two bars in one row, so a hover finds exactly one', () => {
    const big = layoutTrace(largeTrace(1_000));
    for (const row of big.rows)
      for (let i = 1; i < row.length; i++) expect(row[i]!.x0).toBeGreaterThanOrEqual(row[i - 1]!.x1);
    const charge = find(layout.bars, 'S', 'c-p', '/charge');
    expect(barAt(layout, charge.row, (charge.x0 + charge.x1) / 2, 0)).toBe(charge);
    expect(barAt(layout, charge.row, charge.x0 - 100, 0)).not.toBe(charge);
    expect(barAt(layout, charge.row, charge.x0 - 100, 200)).toBe(charge);
    expect(barAt(layout, 999, 10, 0)).toBeNull();
  });

  it('labels calls with protocol, method, resource; N spans with point and interface', () => {
    const n = find(layout.bars, 'N', 'c', '/charge');
    expect(callInfo(n.node)).toBe('HTTP POST /charge @ c eth0');
    expect(barLabel(n)).toBe('HTTP POST /charge @ c eth0 · 20.9 ms');
    expect(instanceInfo(n.node)).toBe('interface eth0 · node svc-a');
    const a = find(layout.bars, 'A', 's-app', '/charge');
    expect(instanceInfo(a.node)).toBe('service payments · instance payments-2230');
    const s = find(layout.bars, 'S', 's-p', '/charge');
    expect(instanceInfo(s.node)).toBe('process payments-api (pid 2230) · node svc-c');
  });

  it('colours A spans by service, S spans by process, N spans grey', () => {
    const a = find(layout.bars, 'A', 's-app', '/charge');
    const s = find(layout.bars, 'S', 's-p', '/charge');
    const n = find(layout.bars, 'N', 's', '/charge');
    expect(a.service).toBe('payments');
    expect(s.service).toBe('payments-api');
    expect(n.color).toBe(NETWORK_COLOR);
    expect(a.color).not.toBe(s.color);
    const inventory = layout.bars.filter((b) => b.service === 'inventory');
    expect(new Set(inventory.map((b) => b.color)).size).toBe(1);
  });

  it('tells apart two processes of one name: by the OTel service one emits, else by pid', () => {
    // the lab's chain: svca (instrumented) and svcb are both `node`
    const t = buildTrace({
      kind: 'S',
      op: 's-p',
      at: 0,
      dur: 3000,
      node: 'vm',
      process: 'node',
      pid: 18034,
      children: [
        {
          kind: 'A',
          op: 's-app',
          at: 100,
          dur: 2800,
          node: 'vm',
          pid: 18034,
          service: 'svca',
          children: [
            {
              kind: 'S',
              op: 'c-p',
              at: 500,
              dur: 1000,
              node: 'vm',
              process: 'node',
              pid: 18034,
              children: [{ kind: 'S', op: 's-p', at: 600, dur: 800, node: 'vm', process: 'node', pid: 18033 }],
            },
          ],
        },
      ],
    });
    const l = layoutTrace(t);
    expect(l.bars.map((b) => b.service)).toEqual(['node (svca)', 'svca', 'node (svca)', 'node (pid 18033)']);
    expect(l.services.map((s) => s.service).sort()).toEqual(['node (pid 18033)', 'node (svca)', 'svca']);
    // one process alone keeps its plain name
    expect(layout.bars.filter((b) => b.node.kind === 'S').some((b) => b.service.includes('('))).toBe(false);
  });

  it("shares the trace's self time among services, adding up to the whole", () => {
    const total = layout.bars.reduce((t, b) => t + b.node.selfTimeUs, 0);
    expect(layout.totalSelfUs).toBe(total);
    expect(layout.services.reduce((t, s) => t + s.selfUs, 0)).toBe(total);
    expect(layout.services.reduce((t, s) => t + s.share, 0)).toBeCloseTo(1, 9);
    // Largest first: payments' server span has no children (its 502 took 20.7 ms).
    expect(layout.services[0]!.service).toBe('payments');
    expect(layout.services[0]!.selfUs).toBe(21_000 - 180 - 240);
    expect(layout.services.find((s) => s.service === 'network')!.kinds).toBe('N');
  });

  it('highlights a span with all its ancestors up to the root', () => {
    const a = find(layout.bars, 'A', 's-app', '/stock?sku=1234');
    const set = withAncestors(layout, a.index);
    const chain = [...set].map((i) => layout.bars[i]!).sort((x, y) => x.depth - y.depth);
    // gateway S s-p, S c-p, N c, N s, orders S s-p, A s-app, S c-p, N c, N s, inventory S s-p, A
    expect(chain.map((b) => b.depth)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(chain.map((b) => b.node.kind).join('')).toBe('SSNNSASNNSA');
    expect(chain[0]!.index).toBe(0);
    expect(chain.at(-1)).toBe(a);
  });

  it('aggregates self time by service, then endpoint, for the flame graph', () => {
    const agg = aggregateSelfTime(layout);
    expect(agg.children!.map((c) => c.name)).toEqual(layout.services.map((s) => s.service));
    const orders = agg.children!.find((c) => c.name === 'orders')!;
    expect(orders.children!.map((c) => c.name)).toEqual(['POST /checkout', 'INTERNAL validate cart']);
    const sum = (n: { value: number; children?: { value: number }[] }): number =>
      n.value + (n.children ?? []).reduce((t, c) => t + sum(c), 0);
    expect(sum(agg)).toBe(layout.totalSelfUs);
  });

  it('lays out 5,000 spans', () => {
    const big = layoutTrace(largeTrace(5_000));
    expect(big.bars.length).toBeGreaterThanOrEqual(5_000);
    expect(big.rows.flat()).toHaveLength(big.bars.length);
  });
});
