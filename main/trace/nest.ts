// Nesting: who is whose parent among the spans the search found.
//
//   - A network span set (one exchange: client process span, N spans from the client
//     side to the server side, server process span) is a chain, each a child of the
//     previous one.
//   - A spans (OTel) nest by span ids: under the A span whose span_id is their
//     parent_span_id, or, when their parent's id is the one the request carried on
//     the wire (W3C traceparent), under the server end of that exchange — the server
//     process span of the process that emitted them.
//   - A client process span (the start of the next network set) goes under the A span
//     whose span_id it carried, else under the server process span of the same
//     process that contains it in time and shares its thread, X-Request-ID or trace id.
//   - A set whose client side was not observed goes under the narrowest client-side
//     span of another process that contains it in time and shares an X-Request-ID or
//     trace id.
// A parent that would close a cycle is refused (counted as a `cycle` conflict).

import type { StoredSpan } from '../api/records.ts';
import { sideRank } from './exchanges.ts';

export interface Timed {
  span: StoredSpan;
  start: number;
  end: number;
}

function ids(s: StoredSpan): (string | number)[] {
  return [s.x_request_id_0, s.x_request_id_1, s.trace_id].filter((x): x is string => x !== null);
}

const processKey = (s: StoredSpan): string | null =>
  s.pid === null ? null : `${s.capture_id}|${s.node ?? ''}|${s.pid}`;

const isClientSide = (s: StoredSpan): boolean =>
  s.observation_point === 'c-p' || s.observation_point === 'c-app' || (s.signal_source === 'packet' && sideRank(s) < 5);

export interface Nesting {
  parent: Map<number, number>;
  cycles: number;
}

export function nest(
  timed: ReadonlyMap<number, Timed>,
  groups: readonly StoredSpan[][],
  opts: { containToleranceUs: number },
): Nesting {
  const parent = new Map<number, number>();
  let cycles = 0;
  const tol = opts.containToleranceUs;

  const setParent = (child: number, p: number): boolean => {
    if (child === p) {
      cycles++;
      return false;
    }
    for (let a: number | undefined = p; a !== undefined; a = parent.get(a)) {
      if (a === child) {
        cycles++;
        return false;
      }
    }
    parent.set(child, p);
    return true;
  };
  const t = (s: StoredSpan): Timed => timed.get(s.id)!;
  const contains = (outer: StoredSpan, inner: StoredSpan): boolean =>
    t(inner).start >= t(outer).start - tol && t(inner).start <= t(outer).end + tol;

  // 1. each network span set is a chain, client side first
  const groupOf = new Map<number, StoredSpan[]>();
  for (const g of groups) {
    for (const s of g) groupOf.set(s.id, g);
    for (let i = 1; i < g.length; i++) setParent(g[i]!.id, g[i - 1]!.id);
  }

  const all = [...timed.values()].map((x) => x.span);
  const keyOf = new Map(all.map((s) => [s.id, processKey(s)]));
  const idsOf = new Map(all.map((s) => [s.id, ids(s)]));
  const appBySpanId = new Map<string, StoredSpan>();
  const netBySpanId = new Map<string, StoredSpan[]>();
  for (const s of all) {
    if (s.span_id === null) continue;
    if (s.signal_source === 'otel') appBySpanId.set(s.span_id, s);
    else netBySpanId.set(s.span_id, [...(netBySpanId.get(s.span_id) ?? []), s]);
  }

  // 2. A spans by span ids
  for (const a of all) {
    if (a.signal_source !== 'otel' || a.parent_span_id === null) continue;
    // the server end of an exchange that carried this span's parent id, innermost first
    const tails = [...new Set((netBySpanId.get(a.parent_span_id) ?? []).map((s) => groupOf.get(s.id)!))]
      .map((g) => g[g.length - 1]!)
      .filter((tail) => !isClientSide(tail) && contains(tail, a))
      .sort((x, y) => t(y).start - t(x).start);
    if (tails[0] && setParent(a.id, tails[0].id)) continue;
    const p = appBySpanId.get(a.parent_span_id);
    if (p) setParent(a.id, p.id);
  }

  // 2b. A spans still without a parent (an SDK's root span: the gateway sent no
  //     traceparent, as nginx, Kong and APISIX do by default): under the narrowest
  //     server process span of the process that emitted them (its pid, else its node
  //     and server socket) that contains them in time and shares an id with them.
  //     OTel SDKs may stamp a start in whole milliseconds (the JS SDK's Date.now()),
  //     up to 1 ms before the request was read: the containment tolerance covers it.
  //     Its end is not compared: the S span ends at the response's first byte, the
  //     SDK's server span when the whole response is handed over, later (by over a
  //     millisecond in the lab on a cold first request).
  for (const a of all) {
    if (a.signal_source !== 'otel' || parent.has(a.id)) continue;
    const aKey = keyOf.get(a.id)!;
    const aIds = idsOf.get(a.id)!;
    if (aIds.length === 0) continue;
    let best: StoredSpan | null = null;
    for (const s of all) {
      if (s.signal_source !== 'ebpf' || s.observation_point !== 's-p') continue;
      const sameProcess =
        aKey !== null
          ? keyOf.get(s.id) === aKey
          : s.capture_id === a.capture_id &&
            s.node === a.node &&
            a.server_ip !== null &&
            s.server_ip === a.server_ip &&
            s.server_port === a.server_port;
      if (!sameProcess || !contains(s, a)) continue;
      if (!idsOf.get(s.id)!.some((x) => aIds.includes(x))) continue;
      if (best === null || t(s).start > t(best).start) best = s;
    }
    if (best) setParent(a.id, best.id);
  }

  // 3. heads of network span sets
  const serverSpansByProcess = new Map<string, StoredSpan[]>();
  for (const s of all) {
    const k = keyOf.get(s.id)!;
    if (k !== null && s.observation_point === 's-p')
      serverSpansByProcess.set(k, [...(serverSpansByProcess.get(k) ?? []), s]);
  }
  for (const g of groups) {
    const h = g[0]!;
    if (parent.has(h.id)) continue;
    if (h.observation_point === 'c-p' || h.observation_point === 'c') {
      const app = h.span_id !== null ? appBySpanId.get(h.span_id) : undefined;
      if (app && setParent(h.id, app.id)) continue;
      const k = keyOf.get(h.id)!;
      const hIds = idsOf.get(h.id)!;
      const hSys = [h.syscall_trace_id_request, h.syscall_trace_id_response].filter((x) => x !== null);
      let best: StoredSpan | null = null;
      let bestScore = -1;
      for (const s of k !== null ? (serverSpansByProcess.get(k) ?? []) : []) {
        if (groupOf.get(s.id) === g || !contains(s, h)) continue;
        const score =
          (hSys.some((x) => x === s.syscall_trace_id_request || x === s.syscall_trace_id_response) ? 4 : 0) +
          (idsOf.get(s.id)!.some((x) => hIds.includes(x)) ? 2 : 0);
        if (score === 0) continue;
        if (score > bestScore || (score === bestScore && best !== null && t(s).start > t(best).start)) {
          best = s;
          bestScore = score;
        }
      }
      if (best && setParent(h.id, best.id)) continue;
    }
  }

  // 4. whatever is still a root: under the narrowest client-side span of another
  //    process that contains it in time and shares an id with it (never one of its
  //    own descendants: that is no cycle in the data, only a wrong guess)
  const isDescendant = (a: number, of: number): boolean => {
    for (let x: number | undefined = a; x !== undefined; x = parent.get(x)) if (x === of) return true;
    return false;
  };
  for (const s of all) {
    if (parent.has(s.id)) continue;
    const sIds = idsOf.get(s.id)!;
    if (sIds.length === 0) continue;
    let best: StoredSpan | null = null;
    for (const c of all) {
      if (c.id === s.id || !isClientSide(c)) continue;
      if (t(c).start > t(s).start || t(s).end > t(c).end) continue;
      const ck = keyOf.get(c.id)!;
      if (ck !== null && ck === keyOf.get(s.id)) continue;
      if (!idsOf.get(c.id)!.some((x) => sIds.includes(x)) || isDescendant(c.id, s.id)) continue;
      if (best === null || t(c).end - t(c).start < t(best).end - t(best).start) best = c;
    }
    if (best) setParent(s.id, best.id);
  }
  return { parent, cycles };
}
