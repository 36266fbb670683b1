// The iterative search of DeepFlow's AutoTracing: from a starting span, each round
// looks up every span that shares a linking key with a span found in the previous
// round, and keeps the candidates that do not conflict with the span that found them.
// Rounds and spans are bounded; a span is visited once, so links that form a cycle
// cannot make the search loop.

import type { StoredSpan } from '../api/records.ts';
import type { LinkRule } from '../api/trace.ts';
import type { TraceSource } from './source.ts';

export interface SearchOptions {
  /** Search rounds at most (DeepFlow's default is 30). */
  maxRounds: number;
  /** Spans found at most; the search stops (truncated) when it reaches it. */
  maxSpans: number;
  /** TCP-sequence links: largest start-time difference on one node, µs. */
  tcpSeqToleranceUs: number;
  /** The same across nodes (clocks differ), µs. */
  tcpSeqCrossNodeToleranceUs: number;
  /** Thread-based links: how far apart in time two spans of one thread may be, µs. */
  syscallToleranceUs: number;
}

export const DEFAULT_SEARCH: SearchOptions = {
  maxRounds: 30,
  maxSpans: 10_000,
  tcpSeqToleranceUs: 100_000,
  tcpSeqCrossNodeToleranceUs: 2_000_000,
  syscallToleranceUs: 1_000,
};

export interface Found {
  span: StoredSpan;
  linkedBy: LinkRule;
  linkedFrom: number | null;
}

export interface SearchResult {
  found: Map<number, Found>;
  rounds: number;
  truncated: boolean;
  conflicts: Record<string, number>;
}

const nonNull = <T>(v: T | null | undefined): v is T => v !== null && v !== undefined;

function xrids(s: StoredSpan): string[] {
  return [s.x_request_id_0, s.x_request_id_1].filter(nonNull);
}

function shareAny<T>(a: readonly T[], b: readonly T[]): boolean {
  return a.some((x) => b.includes(x));
}

function differ<T>(a: T | null, b: T | null): boolean {
  return a !== null && b !== null && a !== b;
}

/**
 * Why `cand` must not be linked to `from` by `rule`, or null. Ids conflict for every
 * rule (a different trace id; for thread, span-id and TCP links also X-Request-IDs
 * with nothing in common). TCP-sequence links claim that both spans saw the same
 * exchange, so protocol, method and path, host and query, status and the response's
 * sequence number must agree too (where both spans know them).
 */
export function conflictOf(from: StoredSpan, cand: StoredSpan, rule: LinkRule): string | null {
  if (rule !== 'trace_id' && differ(from.trace_id, cand.trace_id)) return 'trace_id';
  if (rule === 'syscall_trace_id' || rule === 'tcp_seq' || rule === 'span_id') {
    const a = xrids(from);
    const b = xrids(cand);
    if (a.length > 0 && b.length > 0 && !shareAny(a, b)) return 'x_request_id';
  }
  if (rule === 'tcp_seq') {
    if (differ(from.l7_protocol, cand.l7_protocol)) return 'protocol';
    if (differ(from.request_type, cand.request_type) || differ(from.endpoint, cand.endpoint)) return 'endpoint';
    if (differ(from.request_resource, cand.request_resource) || differ(from.request_domain, cand.request_domain))
      return 'resource';
    if (differ(from.response_code, cand.response_code)) return 'status';
    if (differ(from.resp_tcp_seq, cand.resp_tcp_seq)) return 'tcp_seq';
  }
  return null;
}

/** Whether `rule` relates `from` and `cand` at all (the key lookups are only a superset). */
function matches(from: StoredSpan, cand: StoredSpan, rule: LinkRule, opts: SearchOptions): boolean {
  switch (rule) {
    case 'start':
      return false;
    case 'trace_id':
      return from.trace_id !== null && from.trace_id === cand.trace_id;
    case 'span_id':
      return (
        (from.parent_span_id !== null && cand.span_id === from.parent_span_id) ||
        (from.span_id !== null && cand.parent_span_id === from.span_id)
      );
    case 'x_request_id':
      return shareAny(xrids(from), xrids(cand));
    case 'syscall_trace_id': {
      if (from.capture_id !== cand.capture_id || from.node !== cand.node || from.pid === null) return false;
      if (from.pid !== cand.pid) return false;
      const a = [from.syscall_trace_id_request, from.syscall_trace_id_response].filter(nonNull);
      const b = [cand.syscall_trace_id_request, cand.syscall_trace_id_response].filter(nonNull);
      if (!shareAny(a, b)) return false;
      const tol = opts.syscallToleranceUs;
      return cand.start_time_us <= from.end_time_us + tol && from.start_time_us <= cand.end_time_us + tol;
    }
    case 'tcp_seq': {
      if (from.req_tcp_seq === null || from.req_tcp_seq !== cand.req_tcp_seq) return false;
      const tol = from.node === cand.node ? opts.tcpSeqToleranceUs : opts.tcpSeqCrossNodeToleranceUs;
      return Math.abs(cand.start_time_us - from.start_time_us) <= tol;
    }
  }
}

/** The lookup keys a found span offers for `rule`, and those a candidate answers with. */
function fromKeys(s: StoredSpan, rule: LinkRule): (string | number)[] {
  switch (rule) {
    case 'start':
      return [];
    case 'trace_id':
      return [s.trace_id].filter(nonNull);
    case 'span_id':
      return [
        s.parent_span_id === null ? null : `s:${s.parent_span_id}`,
        s.span_id === null ? null : `p:${s.span_id}`,
      ].filter(nonNull);
    case 'x_request_id':
      return xrids(s);
    case 'syscall_trace_id':
      return [s.syscall_trace_id_request, s.syscall_trace_id_response].filter(nonNull);
    case 'tcp_seq':
      return [s.req_tcp_seq].filter(nonNull);
  }
}

function candKeys(s: StoredSpan, rule: LinkRule): (string | number)[] {
  if (rule !== 'span_id') return fromKeys(s, rule);
  return [
    s.span_id === null ? null : `s:${s.span_id}`,
    s.parent_span_id === null ? null : `p:${s.parent_span_id}`,
  ].filter(nonNull);
}

/** Rules in the order a round applies them: the first that links a span names it. */
const RULES: readonly LinkRule[] = ['trace_id', 'span_id', 'x_request_id', 'syscall_trace_id', 'tcp_seq'];

function unique<T>(xs: Iterable<T | null>): T[] {
  const set = new Set<T>();
  for (const x of xs) if (x !== null) set.add(x);
  return [...set];
}

function lookupIds(source: TraceSource, rule: LinkRule, frontier: readonly StoredSpan[], limit: number): number[] {
  switch (rule) {
    case 'start':
      return [];
    case 'trace_id':
      return source.idsByTraceIds(unique(frontier.map((s) => s.trace_id)), limit);
    case 'span_id':
      return [
        ...source.idsBySpanIds(unique(frontier.map((s) => s.parent_span_id)), limit),
        ...source.idsByParentSpanIds(unique(frontier.map((s) => s.span_id)), limit),
      ];
    case 'x_request_id':
      return source.idsByXRequestIds(unique(frontier.flatMap(xrids)), limit);
    case 'syscall_trace_id':
      return source.idsBySyscallTraceIds(
        unique(frontier.flatMap((s) => [s.syscall_trace_id_request, s.syscall_trace_id_response])),
        limit,
      );
    case 'tcp_seq':
      return source.idsByReqTcpSeqs(unique(frontier.map((s) => s.req_tcp_seq)), limit);
  }
}

/** Searches from `start` until no round finds anything new, or a bound is reached. */
export function searchTrace(
  source: TraceSource,
  start: StoredSpan,
  options: Partial<SearchOptions> = {},
): SearchResult {
  const opts = { ...DEFAULT_SEARCH, ...options };
  const found = new Map<number, Found>([[start.id, { span: start, linkedBy: 'start', linkedFrom: null }]]);
  const conflicts: Record<string, number> = {};
  /** Rows fetched and not (yet) linked. */
  const refused = new Map<number, StoredSpan>();
  let frontier: StoredSpan[] = [start];
  let rounds = 0;
  let truncated = false;

  while (frontier.length > 0 && !truncated) {
    if (rounds >= opts.maxRounds) {
      truncated = true;
      break;
    }
    rounds++;
    const next: StoredSpan[] = [];
    for (const rule of RULES) {
      // A lookup returns at most what could still fit, plus everything already found.
      const limit = opts.maxSpans + found.size + 1;
      const byKey = new Map<string | number, StoredSpan[]>();
      for (const from of frontier)
        for (const k of fromKeys(from, rule)) {
          const list = byKey.get(k);
          if (list) list.push(from);
          else byKey.set(k, [from]);
        }
      // Whole rows only for spans not fetched yet; rows refused earlier stay at hand
      // (another span of a later round may link them).
      const hits = lookupIds(source, rule, frontier, limit);
      if (hits.length >= limit) truncated = true; // a key shared by more spans than the limit
      const wanted = unique(hits.filter((id) => !found.has(id)));
      const fetched = source.byIds(wanted.filter((id) => !refused.has(id)));
      for (const s of fetched) refused.set(s.id, s);
      for (const id of wanted) {
        const cand = refused.get(id);
        if (!cand) continue;
        if (found.has(cand.id)) continue;
        const froms = unique(candKeys(cand, rule).flatMap((k) => byKey.get(k) ?? []));
        let linkedFrom: number | null = null;
        let reason: string | null = null;
        for (const from of froms) {
          if (!matches(from, cand, rule, opts)) continue;
          const c = conflictOf(from, cand, rule);
          if (c === null) {
            linkedFrom = from.id;
            break;
          }
          reason ??= c;
        }
        if (linkedFrom === null) {
          if (reason !== null) conflicts[reason] = (conflicts[reason] ?? 0) + 1;
          continue;
        }
        if (found.size >= opts.maxSpans) {
          truncated = true;
          break;
        }
        found.set(cand.id, { span: cand, linkedBy: rule, linkedFrom });
        refused.delete(cand.id);
        next.push(cand);
      }
      if (truncated) break;
    }
    frontier = next;
  }
  return { found, rounds, truncated, conflicts };
}
