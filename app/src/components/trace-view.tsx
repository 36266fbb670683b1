// The trace view: the A/S/N flame chart of one trace on a time axis, a tooltip on
// hover, a details panel for the clicked span (its ancestors highlighted), the
// services' shares of the trace's time, and the aggregated "where the time went" view.

import { useQuery } from '@tanstack/react-query';
import { useEffect, useMemo, useRef, useState } from 'react';
import { SPAN_FIELDS, type StoredSpan } from '../../../main/api/records.ts';
import type { Trace } from '../../../main/api/trace.ts';
import { formatDateTime } from '../format.ts';
import { traceQuery } from '../queries.ts';
import {
  aggregateSelfTime,
  callInfo,
  formatDuration,
  formatShare,
  instanceInfo,
  layoutTrace,
  withAncestors,
  type Bar,
  type ServiceShare,
  type TraceLayout,
} from '../trace/model.ts';
import { TimeChart, type Emphasis } from '../trace/time-chart.ts';
import { WhereTimeWent } from './where-time-went.tsx';

export function TraceView({ spanId, onBack }: { spanId: number; onBack: () => void }) {
  const trace = useQuery(traceQuery({ spanId }));
  const code = (trace.error as { code?: unknown } | null)?.code;

  return (
    <section className="trace-view" aria-label="Trace">
      <div className="trace-head">
        <button type="button" className="btn btn-plain" onClick={onBack}>
          ← Request log
        </button>
        <h2>Trace of span #{spanId}</h2>
        {trace.data && <TraceSummary trace={trace.data} />}
      </div>
      {trace.isPending && <p className="empty">Assembling the trace…</p>}
      {trace.error && (
        <div className="trace-error" role="alert">
          {code === 'not_found' ? (
            <>
              <p>
                No trace was found for span #{spanId}: it is not in this capture file any more. Go back to the request
                log and choose another request.
              </p>
              <p className="trace-error-detail">{trace.error.message}</p>
            </>
          ) : (
            <p>{trace.error.message}</p>
          )}
          <button type="button" className="btn btn-plain" onClick={onBack}>
            Back to the request log
          </button>
        </div>
      )}
      {trace.data && <TraceBody trace={trace.data} />}
    </section>
  );
}

function TraceSummary({ trace }: { trace: Trace }) {
  const root = trace.roots[0];
  const notes: string[] = [];
  if (trace.truncated) notes.push('search stopped at its limit: the trace may be incomplete');
  if (trace.pruned > 0) notes.push(`${trace.pruned} related span${trace.pruned === 1 ? '' : 's'} outside this tree`);
  return (
    <span className="trace-summary">
      {root && <span className="mono">{callInfo(root)}</span>}
      <span>
        {trace.spanCount.toLocaleString('en-US')} spans · {formatDuration(trace.endUs - trace.startUs)} · started{' '}
        {formatDateTime(trace.startUs)}
      </span>
      {notes.length > 0 && <span className="trace-note">{notes.join('; ')}</span>}
    </span>
  );
}

function TraceBody({ trace }: { trace: Trace }) {
  const layout = useMemo(() => layoutTrace(trace), [trace]);
  const aggregate = useMemo(() => aggregateSelfTime(layout), [layout]);
  const colors = useMemo(() => new Map(layout.services.map((s) => [s.service, s.color])), [layout]);
  const [selected, setSelected] = useState<number | null>(null);
  const [service, setService] = useState<string | null>(null);
  const start = useMemo(
    () => layout.bars.find((b) => b.node.span.id === trace.startSpanId)?.index ?? null,
    [layout, trace.startSpanId],
  );
  const emphasis = useMemo<Emphasis>(
    () => ({ outlined: selected === null ? null : withAncestors(layout, selected), selected, service, start }),
    [layout, selected, service, start],
  );
  const bar = selected === null ? null : (layout.bars[selected] ?? null);

  return (
    <div className="trace-body">
      <div className="trace-main">
        <TraceChart layout={layout} emphasis={emphasis} onSelect={setSelected} />
        {bar ? (
          <SpanDetails bar={bar} layout={layout} onClose={() => setSelected(null)} onSelect={setSelected} />
        ) : (
          <p className="muted trace-hint">
            The span you opened has a dashed amber outline. Click a span for every field (its ancestors are outlined),
            double-click to zoom to it. Wheel zooms, drag pans, Shift+wheel scrolls rows.
          </p>
        )}
        <WhereTimeWent data={aggregate} totalSelfUs={layout.totalSelfUs} colors={colors} />
      </div>
      <ServiceList services={layout.services} active={service} onToggle={(s) => setService(s === service ? null : s)} />
    </div>
  );
}

function TraceChart({
  layout,
  emphasis,
  onSelect,
}: {
  layout: TraceLayout;
  emphasis: Emphasis;
  onSelect: (index: number | null) => void;
}) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const spacer = useRef<HTMLDivElement>(null);
  const chart = useRef<TimeChart | null>(null);
  const [hover, setHover] = useState<{ bar: Bar; x: number; y: number } | null>(null);
  const select = useRef(onSelect);
  useEffect(() => {
    select.current = onSelect;
  }, [onSelect]);

  useEffect(() => {
    const el = canvas.current;
    if (!el) return;
    let first = true;
    const c = new TimeChart(el, layout, {
      spacer: spacer.current ?? undefined,
      onHover: (bar, at) => setHover(bar ? { bar, ...at } : null),
      onClick: (bar) => select.current(bar ? bar.index : null),
      onDraw: () => {
        if (!first) return;
        first = false;
        performance.mark('tapdeck:trace-drawn');
        // Drawn inside an animation frame: a task queued now runs once that frame is painted.
        setTimeout(() => performance.mark('tapdeck:trace-painted'), 0);
      },
    });
    chart.current = c;
    // The benchmark drives pan and zoom through this handle.
    (el as HTMLCanvasElement & { tapdeckChart?: TimeChart }).tapdeckChart = c;
    // Width follows the chart's box; height follows the window.
    const ro = new ResizeObserver(() => c.resize());
    if (el.parentElement?.parentElement) ro.observe(el.parentElement.parentElement);
    const onWindow = (): void => c.resize();
    window.addEventListener('resize', onWindow);
    return () => {
      ro.disconnect();
      window.removeEventListener('resize', onWindow);
      c.destroy();
      chart.current = null;
    };
  }, [layout]);

  useEffect(() => {
    chart.current?.setEmphasis(emphasis);
  }, [emphasis, layout]);

  return (
    <div className="trace-chart-wrap">
      <div className="trace-chart-tools">
        <span className="legend">
          <span className="kind-icon">A</span> application <span className="kind-icon">S</span> system{' '}
          <span className="kind-icon kind-n">N</span> network
        </span>
        <button type="button" className="btn btn-plain" onClick={() => chart.current?.resetZoom()}>
          Reset zoom
        </button>
      </div>
      <div className="trace-chart">
        <canvas ref={canvas} data-testid="trace-chart" aria-label="Spans on a time axis; rows are depth" />
        <div ref={spacer} />
      </div>
      {hover && <SpanTooltip bar={hover.bar} x={hover.x} y={hover.y} />}
    </div>
  );
}

function SpanTooltip({ bar, x, y }: { bar: Bar; x: number; y: number }) {
  const n = bar.node;
  const dur = Math.max(0, n.renderEndUs - n.renderStartUs);
  const selfShare = dur > 0 ? Math.min(1, n.selfTimeUs / dur) : 0;
  const flipX = x > window.innerWidth - 380;
  const flipY = y > window.innerHeight - 110;
  const s = n.span;
  return (
    <div
      className="trace-tooltip"
      role="tooltip"
      data-testid="trace-tooltip"
      style={{ left: flipX ? x - 370 : x + 14, top: flipY ? y - 90 : y + 16 }}
    >
      <div className="tt-call">
        <span className={`kind-icon${n.kind === 'N' ? ' kind-n' : ''}`}>{n.kind}</span> {callInfo(n)}
        {s.response_code !== null && <span className={`tt-code status-${s.response_status}`}> {s.response_code}</span>}
      </div>
      <div className="tt-instance">{instanceInfo(n)}</div>
      <div className="tt-time">
        {formatDuration(dur)} · self {formatDuration(n.selfTimeUs)} ({formatShare(selfShare)} self time)
      </div>
    </div>
  );
}

const NODE_FIELDS: [string, (b: Bar) => string][] = [
  ['kind', (b) => `${b.node.kind} (${b.node.span.signal_source})`],
  ['depth', (b) => String(b.node.depth)],
  ['self time', (b) => formatDuration(b.node.selfTimeUs)],
  ['drawn from', (b) => `${formatDateTime(b.node.renderStartUs)} (+${formatDuration(b.x0)})`],
  ['drawn to', (b) => `${formatDateTime(b.node.renderEndUs)} (+${formatDuration(b.x1)})`],
  ['linked by', (b) => `${b.node.linkedBy}${b.node.linkedFrom !== null ? ` from span #${b.node.linkedFrom}` : ''}`],
];

function fieldText(span: StoredSpan, field: keyof StoredSpan): string {
  const v = span[field];
  if (v === null || v === undefined) return '—';
  if (typeof v === 'object') return JSON.stringify(v);
  if (field.endsWith('_time_us') && typeof v === 'number') return `${v} (${formatDateTime(v)})`;
  return String(v);
}

function SpanDetails({
  bar,
  layout,
  onClose,
  onSelect,
}: {
  bar: Bar;
  layout: TraceLayout;
  onClose: () => void;
  onSelect: (index: number) => void;
}) {
  const n = bar.node;
  const path: Bar[] = [];
  for (let i = bar.parent; i >= 0; i = layout.bars[i]!.parent) path.unshift(layout.bars[i]!);
  const fields: (keyof StoredSpan)[] = ['id', 'capture_id', ...SPAN_FIELDS];
  return (
    <section className="span-details" aria-label="Span details" data-testid="span-details">
      <div className="sd-head">
        <span className={`kind-icon${n.kind === 'N' ? ' kind-n' : ''}`}>{n.kind}</span>
        <h3 className="mono">{callInfo(n)}</h3>
        <span className="muted">{instanceInfo(n)}</span>
        <button type="button" className="btn btn-plain" onClick={onClose} aria-label="Close span details">
          ✕
        </button>
      </div>
      {path.length > 0 && (
        <nav className="sd-path" aria-label="Ancestors">
          {path.map((p) => (
            <button key={p.index} type="button" className="link mono" onClick={() => onSelect(p.index)}>
              {p.node.kind} {callInfo(p.node)}
            </button>
          ))}
        </nav>
      )}
      <dl className="sd-fields">
        {NODE_FIELDS.map(([name, get]) => (
          <div key={name} className="sd-field">
            <dt>{name}</dt>
            <dd className="mono">{get(bar)}</dd>
          </div>
        ))}
        {fields.map((f) => (
          <div key={f} className="sd-field" data-field={f}>
            <dt className="mono">{f}</dt>
            <dd className="mono">{fieldText(n.span, f)}</dd>
          </div>
        ))}
      </dl>
    </section>
  );
}

function ServiceList({
  services,
  active,
  onToggle,
}: {
  services: ServiceShare[];
  active: string | null;
  onToggle: (service: string) => void;
}) {
  return (
    <aside className="service-list" aria-label="Services">
      <h3>Services</h3>
      <p className="muted">Share of the trace's self time · click to highlight</p>
      <ul>
        {services.map((s) => (
          <li key={s.service}>
            <button
              type="button"
              className={`service${active === s.service ? ' active' : ''}`}
              aria-pressed={active === s.service}
              onClick={() => onToggle(s.service)}
            >
              <span className="swatch" style={{ background: s.color }} />
              <span className="service-name">{s.service}</span>
              <span className="service-kinds mono muted">{s.kinds}</span>
              <span className="service-share mono">{formatShare(s.share)}</span>
              <span className="service-bar">
                <span style={{ width: `${Math.max(1, s.share * 100)}%`, background: s.color }} />
              </span>
              <span className="service-time mono muted">
                {formatDuration(s.selfUs)} · {s.spans} span{s.spans === 1 ? '' : 's'}
              </span>
            </button>
          </li>
        ))}
      </ul>
    </aside>
  );
}
