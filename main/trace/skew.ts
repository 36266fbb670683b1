// Clock-skew correction between nodes. In one exchange seen on two nodes, the server
// side's span must lie inside the client side's span (the request leaves the client
// before the server reads it; the response reaches the client after the server wrote
// it). Each such pair bounds the offset to add to the server node's clock; the offset
// chosen is the one closest to zero that satisfies every pair (no correction when the
// clocks already agree), and offsets propagate from the start span's node outwards.

import type { StoredSpan } from '../api/records.ts';
import type { TraceSkew } from '../api/trace.ts';
import { sideRank } from './exchanges.ts';

interface Bound {
  lo: number;
  hi: number;
}

/** The offset in [lo, hi] closest to 0; the middle when the bounds cross. */
function closestToZero(b: Bound): number {
  if (b.lo > b.hi) return Math.round((b.lo + b.hi) / 2);
  if (b.lo > 0) return b.lo;
  if (b.hi < 0) return b.hi;
  return 0;
}

/** Offsets (µs, added to a node's timestamps) that put every node on `startNode`'s clock. */
export function skewOffsets(groups: readonly StoredSpan[][], startNode: string | null): Map<string, number> {
  // bounds.get(x).get(y): offset of y relative to x.
  const bounds = new Map<string, Map<string, Bound[]>>();
  const add = (x: string, y: string, b: Bound): void => {
    let m = bounds.get(x);
    if (!m) bounds.set(x, (m = new Map<string, Bound[]>()));
    const l = m.get(y);
    if (l) l.push(b);
    else m.set(y, [b]);
  };
  for (const g of groups) {
    for (const c of g)
      for (const s of g) {
        if (c.node === null || s.node === null || c.node === s.node || sideRank(c) >= sideRank(s)) continue;
        // s + d inside c: d in [c.start - s.start, c.end - s.end]
        const b = { lo: c.start_time_us - s.start_time_us, hi: c.end_time_us - s.end_time_us };
        add(c.node, s.node, b);
        add(s.node, c.node, { lo: -b.hi, hi: -b.lo });
      }
  }
  const offsets = new Map<string, number>();
  if (startNode === null) return offsets;
  offsets.set(startNode, 0);
  const queue = [startNode];
  while (queue.length > 0) {
    const x = queue.shift()!;
    for (const [y, list] of bounds.get(x) ?? []) {
      if (offsets.has(y)) continue;
      let lo = -Infinity;
      let hi = Infinity;
      for (const b of list) {
        lo = Math.max(lo, Math.min(b.lo, b.hi));
        hi = Math.min(hi, Math.max(b.lo, b.hi));
      }
      let d: number;
      if (lo <= hi) d = closestToZero({ lo, hi });
      else {
        // Pairs disagree (jitter, a long-lived clock step): the median of their middles.
        const mids = list.map((b) => (b.lo + b.hi) / 2).sort((a, b) => a - b);
        d = Math.round(mids[mids.length >> 1]!);
      }
      offsets.set(y, offsets.get(x)! + d);
      queue.push(y);
    }
  }
  return offsets;
}

export function skewList(offsets: Map<string, number>, nodes: Iterable<string | null>): TraceSkew[] {
  const seen = new Set<string>();
  for (const n of nodes) if (n !== null) seen.add(n);
  return [...seen].sort().map((node) => ({ node, offsetUs: offsets.get(node) ?? 0 }));
}
