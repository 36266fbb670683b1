// Trace assembly: start span → iterative search → skew correction → nesting → the
// start span's tree (the rest pruned) with depth, self time and render times. The
// result is the contract of main/api/trace.ts.

import type { StoredSpan } from '../api/records.ts';
import { MAX_TRACE_DEPTH, type Trace, type TraceNode, type TraceStart } from '../api/trace.ts';
import { CodedError } from '../errors.ts';
import { groupExchanges } from './exchanges.ts';
import { nest, type Timed } from './nest.ts';
import { DEFAULT_SEARCH, searchTrace, type SearchOptions } from './search.ts';
import { skewList, skewOffsets } from './skew.ts';
import type { TraceSource } from './source.ts';

export class TraceNotFoundError extends CodedError<'not_found'> {
  override name = 'TraceNotFoundError';
  readonly status = 404;
}

export type AssembleOptions = Partial<SearchOptions>;

const KIND = { otel: 'A', ebpf: 'S', packet: 'N' } as const;

/** The span a trace starts from: the earliest span carrying the id (lowest row id on ties). */
export function findStart(source: TraceSource, start: TraceStart): StoredSpan {
  let spans: StoredSpan[];
  let what: string;
  if ('spanId' in start) {
    spans = source.byIds([start.spanId]);
    what = `There is no span ${start.spanId} in this capture file`;
  } else if ('requestId' in start) {
    const id = source.firstByXRequestId(start.requestId);
    spans = id === null ? [] : source.byIds([id]);
    what = `No span in this capture file has X-Request-ID "${start.requestId}"`;
  } else {
    const id = source.firstByTraceId(start.traceId);
    spans = id === null ? [] : source.byIds([id]);
    what = `No span in this capture file has trace id "${start.traceId}"`;
  }
  if (spans.length === 0) {
    const hint =
      'spanId' in start
        ? 'take a span id from `tapdeck requests --json` (its "id" field)'
        : 'check the id (`tapdeck requests --db FILE --json` lists the ids captured), or capture again while the request is made';
    throw new TraceNotFoundError('not_found', `${what}: ${hint}.`);
  }
  return spans.reduce((a, b) =>
    b.start_time_us < a.start_time_us || (b.start_time_us === a.start_time_us && b.id < a.id) ? b : a,
  );
}

/** Length of the union of intervals, each clipped to [lo, hi]. */
function unionLength(intervals: [number, number][], lo: number, hi: number): number {
  const clipped = intervals
    .map(([a, b]): [number, number] => [Math.max(a, lo), Math.min(b, hi)])
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let total = 0;
  let curA = -Infinity;
  let curB = -Infinity;
  for (const [a, b] of clipped) {
    if (a > curB) {
      if (curB > curA) total += curB - curA;
      curA = a;
      curB = b;
    } else if (b > curB) curB = b;
  }
  if (curB > curA) total += curB - curA;
  return total;
}

export function assembleTrace(source: TraceSource, start: TraceStart, options: AssembleOptions = {}): Trace {
  const opts = { ...DEFAULT_SEARCH, ...options };
  const first = findStart(source, start);
  const search = searchTrace(source, first, opts);
  const spans = [...search.found.values()].map((f) => f.span);

  // Skew: exchanges first grouped on raw clocks with the cross-node tolerance, then
  // regrouped on corrected clocks for nesting.
  const exOpts = { sameNodeToleranceUs: opts.tcpSeqToleranceUs, crossNodeToleranceUs: opts.tcpSeqCrossNodeToleranceUs };
  const offsets = skewOffsets(groupExchanges(spans, exOpts), first.node);
  const off = (s: StoredSpan): number => (s.node !== null ? (offsets.get(s.node) ?? 0) : 0);
  const timed = new Map<number, Timed>();
  for (const s of spans) timed.set(s.id, { span: s, start: s.start_time_us + off(s), end: s.end_time_us + off(s) });
  const groups = groupExchanges(spans, exOpts, (s) => timed.get(s.id)!.start);
  const { parent, cycles } = nest(timed, groups, { containToleranceUs: opts.syscallToleranceUs });

  // The start span's tree; everything else is pruned. A tree deeper than the depth
  // limit is shown from at most half the limit above the start span, and cut below.
  const path = [first.id];
  for (let p = parent.get(first.id); p !== undefined; p = parent.get(p)) path.push(p);
  const root = path[Math.min(path.length - 1, MAX_TRACE_DEPTH >> 1)]!;
  const fullRoot = path[path.length - 1]!;
  const children = new Map<number, number[]>();
  for (const [c, p] of parent) {
    const l = children.get(p);
    if (l) l.push(c);
    else children.set(p, [c]);
  }
  const childrenAll = new Map([...children].map(([k, v]) => [k, [...v]]));
  let startUs = Infinity;
  let endUs = -Infinity;
  // Built without recursion: a trace may be as deep as the span limit.
  const made = new Map<number, TraceNode>();
  const order: number[] = [];
  const todo: [number, number][] = [[root, 0]];
  while (todo.length > 0) {
    const [id, depth] = todo.pop()!;
    const f = search.found.get(id)!;
    const tm = timed.get(id)!;
    order.push(id);
    startUs = Math.min(startUs, tm.start);
    endUs = Math.max(endUs, tm.end);
    const kids = (children.get(id) ?? []).sort((x, y) => timed.get(x)!.start - timed.get(y)!.start || x - y);
    children.set(id, kids);
    made.set(id, {
      span: f.span,
      kind: KIND[f.span.signal_source],
      linkedBy: f.linkedBy,
      linkedFrom: f.linkedFrom,
      depth,
      selfTimeUs: 0,
      renderStartUs: tm.start,
      renderEndUs: tm.end,
      children: [],
    });
    if (depth + 1 >= MAX_TRACE_DEPTH) children.set(id, []);
    else for (let i = kids.length - 1; i >= 0; i--) todo.push([kids[i]!, depth + 1]);
  }
  for (const id of order) {
    const n = made.get(id)!;
    n.children = children.get(id)!.map((c) => made.get(c)!);
    const busy = unionLength(
      n.children.map((k) => [k.renderStartUs, k.renderEndUs]),
      n.renderStartUs,
      n.renderEndUs,
    );
    n.selfTimeUs = Math.max(0, n.renderEndUs - n.renderStartUs - busy);
  }
  const count = order.length;
  // the whole start tree, to report what the depth limit left out
  let inFullTree = 0;
  for (const stack = [fullRoot]; stack.length > 0; inFullTree++)
    for (const c of childrenAll.get(stack.pop()!) ?? []) stack.push(c);
  const tree = made.get(root)!;
  const conflicts = { ...search.conflicts };
  if (cycles > 0) conflicts['cycle'] = (conflicts['cycle'] ?? 0) + cycles;
  return {
    startSpanId: first.id,
    roots: [tree],
    spanCount: count,
    startUs,
    endUs,
    rounds: search.rounds,
    truncated: search.truncated || inFullTree > count,
    conflicts,
    pruned: spans.length - inFullTree,
    ...(inFullTree > count ? { beyondDepthLimit: inFullTree - count } : {}),
    skew: skewList(
      offsets,
      spans.map((s) => s.node),
    ),
  };
}
