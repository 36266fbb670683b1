// Network span sets: the S and N spans that observed one request/response exchange,
// ordered from the client side to the server side (client process span, the N spans
// by observation point, server process span).

import type { StoredSpan } from '../api/records.ts';

/** Observation points from the client side to the server side (DeepFlow's tap sides). */
export const OBSERVATION_ORDER: readonly string[] = ['c-p', 'c', 'c-nd', 'local', 'rest', 's-nd', 's', 's-p'];

export function sideRank(s: StoredSpan): number {
  const i = OBSERVATION_ORDER.indexOf(s.observation_point);
  return i < 0 ? OBSERVATION_ORDER.length : i;
}

export interface ExchangeOptions {
  /** Largest start-time difference between two observations of one exchange, one node, µs. */
  sameNodeToleranceUs: number;
  crossNodeToleranceUs: number;
}

/**
 * Groups S and N spans into exchanges: same request TCP sequence number within the
 * time tolerance (and the same response sequence number where both know it), or,
 * when a span has no sequence number, the same socket 4-tuple with overlapping times.
 * Every span is in exactly one group (possibly alone); each group is ordered client
 * side first. `startOf` gives a span's skew-corrected start.
 */
export function groupExchanges(
  spans: readonly StoredSpan[],
  opts: ExchangeOptions,
  startOf: (s: StoredSpan) => number = (s) => s.start_time_us,
): StoredSpan[][] {
  const parent = new Map<number, number>();
  const find = (id: number): number => {
    let r = id;
    while (parent.get(r) !== r) r = parent.get(r)!;
    let c = id;
    while (c !== r) {
      const n = parent.get(c)!;
      parent.set(c, r);
      c = n;
    }
    return r;
  };
  const union = (a: number, b: number): void => {
    const ra = find(a);
    const rb = find(b);
    if (ra !== rb) parent.set(rb, ra);
  };
  const net = spans.filter((s) => s.signal_source !== 'otel');
  for (const s of net) parent.set(s.id, s.id);

  const bySeq = new Map<number, StoredSpan[]>();
  const byTuple = new Map<string, StoredSpan[]>();
  for (const s of net) {
    if (s.req_tcp_seq !== null) {
      const l = bySeq.get(s.req_tcp_seq);
      if (l) l.push(s);
      else bySeq.set(s.req_tcp_seq, [s]);
    }
    if (s.client_ip !== null && s.client_port !== null && s.server_ip !== null && s.server_port !== null) {
      const k = `${s.client_ip}|${s.client_port}|${s.server_ip}|${s.server_port}`;
      const l = byTuple.get(k);
      if (l) l.push(s);
      else byTuple.set(k, [s]);
    }
  }
  for (const list of bySeq.values()) {
    for (let i = 0; i < list.length; i++)
      for (let j = i + 1; j < list.length; j++) {
        const a = list[i]!;
        const b = list[j]!;
        const tol = a.node === b.node ? opts.sameNodeToleranceUs : opts.crossNodeToleranceUs;
        if (Math.abs(startOf(a) - startOf(b)) > tol) continue;
        if (a.resp_tcp_seq !== null && b.resp_tcp_seq !== null && a.resp_tcp_seq !== b.resp_tcp_seq) continue;
        union(a.id, b.id);
      }
  }
  // Spans without sequence numbers (N spans of a partial capture, other protocols)
  // join a group whose socket matches and whose time overlaps.
  for (const s of net) {
    if (s.req_tcp_seq !== null || s.client_ip === null) continue;
    const k = `${s.client_ip}|${s.client_port}|${s.server_ip}|${s.server_port}`;
    for (const o of byTuple.get(k) ?? []) {
      if (o.id === s.id) continue;
      const tol = o.node === s.node ? opts.sameNodeToleranceUs : opts.crossNodeToleranceUs;
      if (Math.abs(startOf(o) - startOf(s)) <= tol) union(o.id, s.id);
    }
  }

  const groups = new Map<number, StoredSpan[]>();
  for (const s of net) {
    const r = find(s.id);
    const g = groups.get(r);
    if (g) g.push(s);
    else groups.set(r, [s]);
  }
  const out = [...groups.values()];
  for (const g of out) g.sort((a, b) => sideRank(a) - sideRank(b) || startOf(a) - startOf(b) || a.id - b.id);
  return out;
}
