// One queryOptions() factory per query: key and fetcher side by side (TanStack Query's
// guide). Components and the live-events hook use these, never raw keys.

import { keepPreviousData, queryOptions } from '@tanstack/react-query';
import type { CaptureInfo, RequestQuery } from '../../main/api/contract.ts';
import type { TraceStart } from '../../main/api/trace.ts';
import { api } from './api.ts';

export const appInfoQuery = () =>
  queryOptions({
    queryKey: ['app:info'] as const,
    queryFn: () => api['app:info'](),
    staleTime: Infinity,
  });

export const capturesQuery = () =>
  queryOptions({
    queryKey: ['capture:list'] as const,
    queryFn: () => api['capture:list'](),
  });

/** Prefix shared by every request-log query, whatever its filter. */
export const requestsQueryRoot = ['requests:query'] as const;

export const requestsQuery = (q: RequestQuery) =>
  queryOptions({
    queryKey: [...requestsQueryRoot, q] as const,
    queryFn: () => api['requests:query'](q),
    // Keep showing the old page while a new filter or a live refresh loads.
    placeholderData: keepPreviousData,
    refetchOnWindowFocus: false,
  });

/** The assembled trace around one span (or trace id, or X-Request-ID). */
export const traceQuery = (start: TraceStart) =>
  queryOptions({
    queryKey: ['trace:get', start] as const,
    queryFn: async () => {
      const trace = await api['trace:get'](start);
      // The trace view's paint benchmark measures from here to the first drawn frame.
      performance.mark('tapdeck:trace-received');
      return trace;
    },
    // Assembled on demand from spans that may still be arriving: fetch again on reopen.
    staleTime: 0,
    gcTime: 0,
    retry: false,
    refetchOnWindowFocus: false,
  });

/** Captures that are still in progress. */
export const ACTIVE_STATES: ReadonlySet<CaptureInfo['state']> = new Set([
  'connecting',
  'deploying',
  'running',
  'stopping',
]);

/** Inserts or replaces one capture in the list (newest first, as capture:list returns it). */
export function upsertCapture(list: CaptureInfo[] | undefined, info: CaptureInfo): CaptureInfo[] {
  const rest = (list ?? []).filter((c) => c.id !== info.id);
  return [...rest, info].sort((a, b) => b.id - a.id);
}
