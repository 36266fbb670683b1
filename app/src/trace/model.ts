// What the trace view draws, computed once per trace: one bar per span on a time axis
// (x = µs since the trace's start, rows = depth, with extra lanes inside a depth where
// spans overlap in time so concurrent siblings stay visible side by side), the colour
// of each service, each service's share of the trace's self time, and the hierarchy
// for the aggregated "where the time went" view. Pure: no DOM, testable in Node.

import type { Trace, TraceNode } from '../../../main/api/trace.ts';

export interface Bar {
  /** Index in TraceLayout.bars (depth-first order). */
  index: number;
  node: TraceNode;
  /** Parent bar index, -1 for roots. */
  parent: number;
  /** µs since the trace's start. */
  x0: number;
  x1: number;
  depth: number;
  /** Screen row: depth band plus lane inside it. */
  row: number;
  service: string;
  color: string;
}

/** Text drawn on a bar: call information then duration (built when first drawn). */
export function barLabel(bar: Bar): string {
  return `${callInfo(bar.node)} · ${formatDuration(durationOf(bar.node))}`;
}

export interface ServiceShare {
  service: string;
  color: string;
  /** Kinds of span this service has (A, S, N). */
  kinds: string;
  selfUs: number;
  /** selfUs over the trace's total self time, 0..1. */
  share: number;
  spans: number;
}

export interface TraceLayout {
  bars: Bar[];
  /** rows[r] holds the bars of screen row r, sorted by x0, never overlapping. */
  rows: Bar[][];
  /** First screen row of each depth. */
  depthRow: number[];
  durationUs: number;
  services: ServiceShare[];
  totalSelfUs: number;
}

/** Colour-blind-friendly, distinct on white, dark enough for white text. */
const PALETTE = [
  '#4477aa',
  '#cc6677',
  '#228833',
  '#aa3377',
  '#996f00',
  '#117788',
  '#8855cc',
  '#c5501c',
  '#55773b',
  '#a04a4a',
  '#3a6bd1',
  '#7a5c8f',
];
export const NETWORK_COLOR = '#9aa0a6';
/** N spans have no service: they are grouped under this name in the service list. */
export const NETWORK_SERVICE = 'network';

export function serviceOf(node: TraceNode): string {
  const s = node.span;
  if (node.kind === 'N') return NETWORK_SERVICE;
  if (node.kind === 'A') return s.app_service ?? s.process_name ?? 'unknown service';
  return s.process_name ?? s.app_service ?? 'unknown process';
}

const processKey = (n: TraceNode): string => `${n.span.capture_id}|${n.span.node ?? ''}|${n.span.pid ?? ''}`;

/**
 * serviceOf, with S spans of different processes that share a name told apart (two
 * Node services are both `node`): `node (svca)` for the process whose OTel spans name
 * service svca, else `node (pid 4211)`.
 */
function serviceNamer(trace: Trace): (node: TraceNode) => string {
  const keysByName = new Map<string, Set<string>>();
  const appByKey = new Map<string, string>();
  const stack = [...trace.roots];
  while (stack.length) {
    const n = stack.pop()!;
    stack.push(...n.children);
    if (n.kind === 'S' && n.span.process_name !== null) {
      const set = keysByName.get(n.span.process_name) ?? new Set<string>();
      keysByName.set(n.span.process_name, set.add(processKey(n)));
    } else if (n.kind === 'A' && n.span.pid !== null && n.span.app_service !== null)
      appByKey.set(processKey(n), n.span.app_service);
  }
  return (node) => {
    const name = serviceOf(node);
    if (node.kind !== 'S' || node.span.process_name === null || (keysByName.get(name)?.size ?? 0) < 2) return name;
    return `${name} (${appByKey.get(processKey(node)) ?? `pid ${node.span.pid ?? '?'}`})`;
  };
}

/** Protocol, method and resource; for N spans also the observation point and interface. */
export function callInfo(node: TraceNode): string {
  const s = node.span;
  const parts = [s.l7_protocol, s.request_type, s.request_resource ?? s.endpoint].filter(
    (p): p is string => typeof p === 'string' && p !== '',
  );
  let text = parts.join(' ') || `${s.signal_source} span`;
  if (node.kind === 'N') text += ` @ ${s.observation_point}${s.interface ? ` ${s.interface}` : ''}`;
  return text;
}

/** Where it was seen: A service and instance, S process and node, N interface and node. */
export function instanceInfo(node: TraceNode): string {
  const s = node.span;
  const nodeName = s.node ?? 'unknown node';
  if (node.kind === 'A') return `service ${s.app_service ?? '?'} · instance ${s.app_instance ?? '?'}`;
  if (node.kind === 'N') return `interface ${s.interface ?? '?'} · node ${nodeName}`;
  return `process ${s.process_name ?? '?'}${s.pid !== null ? ` (pid ${s.pid})` : ''} · node ${nodeName}`;
}

/** Microseconds, readably: 840 µs, 12.4 ms, 1.52 s. */
export function formatDuration(us: number): string {
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us < 100_000 ? 1 : 0)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}

export function formatShare(share: number): string {
  const pct = share * 100;
  return `${pct < 10 ? pct.toFixed(1) : Math.round(pct)}%`;
}

function durationOf(n: TraceNode): number {
  return Math.max(0, n.renderEndUs - n.renderStartUs);
}

export function layoutTrace(trace: Trace): TraceLayout {
  const bars: Bar[] = [];
  const colors = new Map<string, string>();
  const colorOf = (service: string, kind: TraceNode['kind']): string => {
    if (kind === 'N') return NETWORK_COLOR;
    let c = colors.get(service);
    if (!c) {
      c = PALETTE[colors.size % PALETTE.length]!;
      colors.set(service, c);
    }
    return c;
  };

  // Depth-first, children by start time, iteratively (a 5,000-span trace can be deep).
  const stack: { node: TraceNode; parent: number }[] = [];
  const roots = [...trace.roots].sort((a, b) => b.renderStartUs - a.renderStartUs);
  for (const r of roots) stack.push({ node: r, parent: -1 });
  const nameOf = serviceNamer(trace);
  while (stack.length) {
    const { node, parent } = stack.pop()!;
    const service = nameOf(node);
    const bar: Bar = {
      index: bars.length,
      node,
      parent,
      x0: node.renderStartUs - trace.startUs,
      x1: node.renderEndUs - trace.startUs,
      depth: node.depth,
      row: 0,
      service,
      color: colorOf(service, node.kind),
    };
    bars.push(bar);
    const kids = [...node.children].sort((a, b) => b.renderStartUs - a.renderStartUs);
    for (const k of kids) stack.push({ node: k, parent: bar.index });
  }

  // Lanes: inside one depth, a span goes to the first lane free at its start.
  const byDepth: Bar[][] = [];
  for (const b of bars) (byDepth[b.depth] ??= []).push(b);
  const rows: Bar[][] = [];
  const depthRow: number[] = [];
  for (let d = 0; d < byDepth.length; d++) {
    depthRow[d] = rows.length;
    const inDepth = (byDepth[d] ?? []).slice().sort((a, b) => a.x0 - b.x0 || b.x1 - a.x1);
    const laneEnds: number[] = [];
    const lanes: Bar[][] = [];
    for (const b of inDepth) {
      let lane = laneEnds.findIndex((end) => end <= b.x0);
      if (lane < 0) {
        lane = laneEnds.length;
        laneEnds.push(b.x1);
        lanes.push([]);
      } else laneEnds[lane] = b.x1;
      lanes[lane]!.push(b);
      b.row = rows.length + lane;
    }
    if (lanes.length === 0) lanes.push([]);
    rows.push(...lanes);
  }

  // Service shares of the trace's self time.
  const shares = new Map<string, ServiceShare>();
  let totalSelfUs = 0;
  for (const b of bars) {
    const self = Math.max(0, b.node.selfTimeUs);
    totalSelfUs += self;
    let s = shares.get(b.service);
    if (!s) {
      s = { service: b.service, color: b.color, kinds: '', selfUs: 0, share: 0, spans: 0 };
      shares.set(b.service, s);
    }
    s.selfUs += self;
    s.spans++;
    if (!s.kinds.includes(b.node.kind)) s.kinds = [...s.kinds, b.node.kind].sort().join('');
  }
  const services = [...shares.values()].sort((a, b) => b.selfUs - a.selfUs || a.service.localeCompare(b.service));
  for (const s of services) s.share = totalSelfUs > 0 ? s.selfUs / totalSelfUs : 0;

  return {
    bars,
    rows,
    depthRow,
    durationUs: Math.max(1, trace.endUs - trace.startUs),
    services,
    totalSelfUs,
  };
}

/** The bar and all its ancestors, as a set of bar indexes. */
export function withAncestors(layout: TraceLayout, index: number): Set<number> {
  const set = new Set<number>();
  for (let i = index; i >= 0; i = layout.bars[i]!.parent) set.add(i);
  return set;
}

/** The bar of screen row `row` that covers time `t` (µs), give or take `slackUs`. */
export function barAt(layout: TraceLayout, row: number, t: number, slackUs: number): Bar | null {
  const lane = layout.rows[row];
  if (!lane || lane.length === 0) return null;
  // Last bar starting at or before t + slack.
  let lo = 0;
  let hi = lane.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (lane[mid]!.x0 <= t + slackUs) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  if (found < 0) return null;
  const b = lane[found]!;
  return b.x1 + slackUs >= t ? b : null;
}

/** Node of the aggregated view: root → service → endpoint, value = self time (µs). */
export interface AggregateNode {
  name: string;
  value: number;
  children?: AggregateNode[];
}

export function aggregateSelfTime(layout: TraceLayout): AggregateNode {
  const byService = new Map<string, Map<string, number>>();
  for (const b of layout.bars) {
    const s = b.node.span;
    const endpoint = `${s.request_type ?? ''} ${s.endpoint ?? s.request_resource ?? '?'}`.trim();
    const eps = byService.get(b.service) ?? new Map<string, number>();
    byService.set(b.service, eps);
    eps.set(endpoint, (eps.get(endpoint) ?? 0) + Math.max(0, b.node.selfTimeUs));
  }
  // Services in the service list's order (largest self time first).
  const children: AggregateNode[] = layout.services.map(({ service }) => ({
    name: service,
    value: 0,
    children: [...(byService.get(service) ?? [])]
      .map(([name, value]) => ({ name, value }))
      .sort((a, b) => b.value - a.value),
  }));
  return { name: 'trace', value: 0, children };
}
