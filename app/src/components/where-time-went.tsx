// "Where the time went": the trace's self time aggregated by service, then endpoint,
// drawn by d3-flame-graph (which packs children by value, so it has no time axis: the
// time-axis chart is TraceChart). Click a frame to zoom into it, click the root to
// zoom out.

import flamegraph from 'd3-flame-graph';
import { select } from 'd3-selection';
import { useEffect, useRef, useState } from 'react';
import { formatDuration, formatShare, NETWORK_COLOR, NETWORK_SERVICE, type AggregateNode } from '../trace/model.ts';

export function WhereTimeWent({
  data,
  totalSelfUs,
  colors,
}: {
  data: AggregateNode;
  totalSelfUs: number;
  colors: ReadonlyMap<string, string>;
}) {
  const host = useRef<HTMLDivElement>(null);
  const details = useRef<HTMLDivElement>(null);
  // d3-flame-graph draws at a fixed width: follow the box's width.
  const [width, setWidth] = useState(0);
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const ro = new ResizeObserver((entries) => {
      const w = Math.floor(entries[0]?.contentRect.width ?? 0);
      if (w > 0) setWidth(w);
    });
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  useEffect(() => {
    const el = host.current;
    if (!el || width === 0) return;
    const label = (name: string, value: number): string =>
      `${name}: ${formatDuration(value)} self time (${formatShare(totalSelfUs > 0 ? value / totalSelfUs : 0)})`;
    const chart = flamegraph<AggregateNode>()
      .width(Math.max(300, width))
      .cellHeight(20)
      // Three levels (trace, service, endpoint): no room left for deeper frames.
      .height(20 * 3 + 2)
      .transitionDuration(250)
      .selfValue(true)
      .inverted(true)
      .sort(false)
      // Frames narrower than a pixel are not drawn (their time still counts above them).
      .minFrameSize(1)
      .title('')
      .setLabelHandler((d) => label(d.data.name, d.value))
      .setColorMapper((d) => {
        if (d.depth === 0) return '#adbac7';
        const service = d.depth === 1 ? d.data.name : (d.parent?.data.name ?? '');
        const base = service === NETWORK_SERVICE ? NETWORK_COLOR : (colors.get(service) ?? '#9aa0a6');
        return d.depth === 1 ? base : `${base}b3`;
      })
      .setDetailsElement(details.current);
    // Built after the time chart's first frame is on screen (the chart asked for its
    // animation frame first): a trace with many endpoints makes many SVG frames.
    let timer = 0;
    const frame = requestAnimationFrame(() => {
      timer = window.setTimeout(() => {
        select(el).selectAll('*').remove();
        select<HTMLElement, AggregateNode>(el).datum(data).call(chart);
      }, 0);
    });
    return () => {
      cancelAnimationFrame(frame);
      clearTimeout(timer);
      chart.destroy();
      select(el).selectAll('*').remove();
    };
  }, [data, totalSelfUs, colors, width]);

  return (
    <section className="where-time-went" aria-label="Where the time went">
      <h3>
        Where the time went <span className="muted">self time by service, then endpoint · click to zoom</span>
      </h3>
      <div ref={host} className="wtw-chart" data-testid="where-time-went" />
      <div ref={details} className="wtw-details mono muted" aria-live="polite" />
    </section>
  );
}
