// Trace assembly: start span → iterative search → skew correction → nesting → the
// start span's tree (the rest pruned) with depth, self time and render times. The
// result is the contract of main/api/trace.ts.

import type { StoredSpan } from '../api/records.ts';
import type { Trace, TraceNode, TraceStart } from '../api/trace.ts';
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

  // The start span's tree; everything else is pruned.
  let root = first.id;
  for (let p = parent.get(root); p !== undefined; p = parent.get(root)) root = p;
  const children = new Map<number, number[]>();
  for (const [c, p] of parent) {
    const l = children.get(p);
    if (l) l.push(c);
    else children.set(p, [c]);
  }
  let count = 0;
  let startUs = Infinity;
  let endUs = -Infinity;
  const build = (id: number, depth: number): TraceNode => {
    const f = search.found.get(id)!;
    const tm = timed.get(id)!;
    count++;
    startUs = Math.min(startUs, tm.start);
    endUs = Math.max(endUs, tm.end);
    const kids = (children.get(id) ?? [])
      .sort((a, b) => timed.get(a)!.start - timed.get(b)!.start || a - b)
      .map((c) => build(c, depth + 1));
    const busy = unionLength(
      kids.map((k) => [k.renderStartUs, k.renderEndUs]),
      tm.start,
      tm.end,
    );
    return {
      span: f.span,
      kind: KIND[f.span.signal_source],
      linkedBy: f.linkedBy,
      linkedFrom: f.linkedFrom,
      depth,
      selfTimeUs: Math.max(0, tm.end - tm.start - busy),
      renderStartUs: tm.start,
      renderEndUs: tm.end,
      children: kids,
    };
  };
  const tree = build(root, 0);
  const conflicts = { ...search.conflicts };
  if (cycles > 0) conflicts['cycle'] = (conflicts['cycle'] ?? 0) + cycles;
  return {
    startSpanId: first.id,
    roots: [tree],
    spanCount: count,
    startUs,
    endUs,
    rounds: search.rounds,
    truncated: search.truncated,
    conflicts,
    pruned: spans.length - count,
    skew: skewList(
      offsets,
      spans.map((s) => s.node),
    ),
  };
}
