// The request log: spans newest first, filtered, filling live while a capture runs.

import { useQuery } from '@tanstack/react-query';
import { useMemo, useState } from 'react';
import type { CaptureInfo, RequestQuery } from '../../../main/api/contract.ts';
import type { StoredSpan } from '../../../main/api/records.ts';
import { formatCount, formatDateTime, formatMs, formatTime } from '../format.ts';
import { requestsQuery } from '../queries.ts';
import { useDebounced } from '../use-debounced.ts';

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];
const STATUS_CLASSES: Record<string, { label: string; q: Partial<RequestQuery> }> = {
  '': { label: 'any status', q: {} },
  '2xx': { label: '2xx', q: { minCode: 200, maxCode: 299 } },
  '3xx': { label: '3xx', q: { minCode: 300, maxCode: 399 } },
  '4xx': { label: '4xx', q: { minCode: 400, maxCode: 499 } },
  '5xx': { label: '5xx', q: { minCode: 500, maxCode: 599 } },
  timeout: { label: 'timeout', q: { status: 'timeout' } },
};
const PAGE = 200;
const NO_ROWS: StoredSpan[] = [];
const MAX_ROWS = 10_000;

interface Filters {
  captureId: string;
  method: string;
  path: string;
  statusClass: string;
  xRequestId: string;
}
const NO_FILTERS: Filters = { captureId: '', method: '', path: '', statusClass: '', xRequestId: '' };

function toQuery(f: Filters, limit: number): RequestQuery {
  const q: RequestQuery = { limit, ...STATUS_CLASSES[f.statusClass]?.q };
  if (f.captureId) q.captureId = Number(f.captureId);
  if (f.method) q.method = f.method;
  if (f.path.trim()) q.path = f.path.trim();
  if (f.xRequestId.trim()) q.xRequestId = f.xRequestId.trim();
  return q;
}

export function RequestLog({
  captures,
  live,
  onLiveChange,
  onOpenTrace,
  hidden = false,
}: {
  captures: CaptureInfo[];
  live: boolean;
  onLiveChange: (live: boolean) => void;
  /** Opens the trace of a span (a click on its row). */
  onOpenTrace: (spanId: number) => void;
  hidden?: boolean;
}) {
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [limit, setLimit] = useState(PAGE);
  const settled = useDebounced(filters, 200);
  const query = useMemo(() => toQuery(settled, limit), [settled, limit]);
  const page = useQuery(requestsQuery(query));
  const rows = page.data?.rows ?? NO_ROWS;
  const total = page.data?.total ?? 0;
  // The core counts up to 10,000 matches (RequestPage.totalCapped): "10,000+ requests".
  const capped = page.data?.totalCapped === true;

  const set = <K extends keyof Filters>(key: K, value: Filters[K]): void => {
    setFilters((f) => ({ ...f, [key]: value }));
    setLimit(PAGE);
  };
  const filtered = JSON.stringify(filters) !== JSON.stringify(NO_FILTERS);

  // Rows that arrived since the last refresh of the same filter get a brief highlight.
  const [seen, setSeen] = useState<{ key: string; rows: StoredSpan[]; freshAbove: number }>({
    key: '',
    rows: [],
    freshAbove: Infinity,
  });
  const key = JSON.stringify(query);
  if (seen.rows !== rows) {
    const prevMax = seen.key === key && seen.rows.length ? Math.max(...seen.rows.map((r) => r.id)) : Infinity;
    setSeen({ key, rows, freshAbove: prevMax });
  }

  return (
    <section className="request-log" aria-label="Request log" hidden={hidden}>
      <div className="filters" role="search">
        <select aria-label="Capture" value={filters.captureId} onChange={(e) => set('captureId', e.target.value)}>
          <option value="">all captures</option>
          {captures.map((c) => (
            <option key={c.id} value={String(c.id)}>
              #{c.id} {c.target} ({c.state})
            </option>
          ))}
        </select>
        <select aria-label="Method" value={filters.method} onChange={(e) => set('method', e.target.value)}>
          <option value="">any method</option>
          {METHODS.map((m) => (
            <option key={m} value={m}>
              {m}
            </option>
          ))}
        </select>
        <input
          aria-label="Path contains"
          className="mono filter-path"
          placeholder="path contains…"
          value={filters.path}
          onChange={(e) => set('path', e.target.value)}
          spellCheck={false}
        />
        <select aria-label="Status" value={filters.statusClass} onChange={(e) => set('statusClass', e.target.value)}>
          {Object.entries(STATUS_CLASSES).map(([k, v]) => (
            <option key={k} value={k}>
              {v.label}
            </option>
          ))}
        </select>
        <input
          aria-label="X-Request-ID"
          className="mono filter-xrid"
          placeholder="X-Request-ID"
          value={filters.xRequestId}
          onChange={(e) => set('xRequestId', e.target.value)}
          spellCheck={false}
        />
        {filtered && (
          <button
            type="button"
            className="btn btn-plain"
            onClick={() => {
              setFilters(NO_FILTERS);
              setLimit(PAGE);
            }}
          >
            Clear
          </button>
        )}
        <label className="field-check live-toggle" title="Refresh the log as spans arrive">
          <input type="checkbox" checked={live} onChange={(e) => onLiveChange(e.target.checked)} />
          <span>Live</span>
        </label>
        <span
          className="count"
          data-testid="request-count"
          aria-live="polite"
          title={capped ? `More than ${formatCount(total)} requests match; counting stops there` : undefined}
        >
          {page.isPending
            ? 'loading…'
            : `${formatCount(total)}${capped ? '+' : ''} ${total === 1 && !capped ? 'request' : 'requests'}`}
          {rows.length < total && <span className="muted"> · newest {formatCount(rows.length)} shown</span>}
        </span>
      </div>
      {page.error && (
        <p className="form-error" role="alert">
          {page.error.message}
        </p>
      )}
      <div className="table-wrap">
        <table className="log">
          <thead>
            <tr>
              <th className="c-time">Time</th>
              <th className="c-op" title="Observation point">
                Obs
              </th>
              <th className="c-proc">Process</th>
              <th className="c-method">Method</th>
              <th className="c-host">Host</th>
              <th className="c-path">Path</th>
              <th className="c-status">Status</th>
              <th className="c-dur">Duration ms</th>
              <th className="c-xrid">X-Request-ID</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <Row
                key={r.id}
                span={r}
                fresh={r.id > seen.freshAbove}
                onRequestId={(id) => set('xRequestId', id)}
                onOpen={() => onOpenTrace(r.id)}
              />
            ))}
          </tbody>
        </table>
        {!page.isPending && rows.length === 0 && (
          <p className="empty">{filtered ? 'No requests match these filters.' : 'No requests captured yet.'}</p>
        )}
        {rows.length < total && limit < MAX_ROWS && (
          <button
            type="button"
            className="btn btn-plain more"
            onClick={() => setLimit((l) => Math.min(l + PAGE * 5, MAX_ROWS))}
          >
            Show {formatCount(Math.min(PAGE * 5, total - rows.length, MAX_ROWS - limit))} older
          </button>
        )}
      </div>
    </section>
  );
}

function Row({
  span: s,
  fresh,
  onRequestId,
  onOpen,
}: {
  span: StoredSpan;
  fresh: boolean;
  onRequestId: (id: string) => void;
  onOpen: () => void;
}) {
  const xrid = s.x_request_id_0 ?? s.x_request_id_1;
  const statusTitle = [s.response_status, s.response_exception].filter(Boolean).join(': ');
  return (
    <tr
      className={fresh ? 'fresh openable' : 'openable'}
      data-span-id={s.id}
      tabIndex={0}
      title="Open this request's trace"
      onClick={onOpen}
      onKeyDown={(e) => {
        if (e.key === 'Enter') onOpen();
      }}
    >
      <td className="c-time mono" title={formatDateTime(s.start_time_us)}>
        {formatTime(s.start_time_us)}
      </td>
      <td className="c-op mono" title={`${s.signal_source} span`}>
        {s.observation_point}
      </td>
      <td className="c-proc" title={s.container_id ? `container ${s.container_id}` : undefined}>
        {s.process_name ?? '—'}
        {s.pid !== null && <span className="muted mono"> {s.pid}</span>}
      </td>
      <td className="c-method mono">{s.request_type ?? '—'}</td>
      <td className="c-host mono" title={s.request_domain ?? undefined}>
        {s.request_domain ?? '—'}
      </td>
      <td className="c-path mono" title={s.request_resource ?? undefined}>
        {s.request_resource ?? s.endpoint ?? '—'}
      </td>
      <td className={`c-status mono status-${s.response_status}`} title={statusTitle}>
        <span className="code">{s.response_code ?? (s.response_status === 'timeout' ? 'timeout' : '—')}</span>
      </td>
      <td className="c-dur mono">{formatMs(s.duration_us)}</td>
      <td className="c-xrid mono">
        {xrid ? (
          <button
            type="button"
            className="link mono"
            title={
              s.x_request_id_1 && s.x_request_id_1 !== xrid
                ? `request ${xrid}, response ${s.x_request_id_1}; click to show only this id`
                : 'Show only this X-Request-ID'
            }
            onClick={(e) => {
              e.stopPropagation(); // filter the log, do not open the trace
              onRequestId(xrid);
            }}
          >
            {xrid}
          </button>
        ) : (
          <span className="muted">—</span>
        )}
      </td>
    </tr>
  );
}
