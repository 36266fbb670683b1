// The time-axis flame chart on a canvas: x is wall-clock time from the trace's start to
// its end (d3-scale, zoomed and panned on x with d3-zoom), rows are depth. Redraws at
// most once per animation frame and draws only the bars in view; hover and click are
// hit-tested against the layout's rows (binary search), not against the pixels.

import { scaleLinear, type ScaleLinear } from 'd3-scale';
import { select, type Selection } from 'd3-selection';
import { zoom, zoomIdentity, type D3ZoomEvent, type ZoomBehavior, type ZoomTransform } from 'd3-zoom';
import { barAt, type Bar, type TraceLayout } from './model.ts';

export const ROW_HEIGHT = 22;
export const AXIS_HEIGHT = 24;
const BAR_GAP = 2;
const FONT_PX = 11;
const ICON_W = 15;

export interface TimeChartOptions {
  onHover?: (bar: Bar | null, at: { x: number; y: number }) => void;
  onClick?: (bar: Bar | null) => void;
  /** Called after each frame is drawn, with the time the draw took (ms). */
  onDraw?: (drawMs: number) => void;
}

export interface Emphasis {
  /** Bars drawn outlined (the selected span and its ancestors). */
  outlined: ReadonlySet<number> | null;
  /** The selected bar, drawn with a heavier outline. */
  selected: number | null;
  /** When set, bars of other services are faded. */
  service: string | null;
}

export class TimeChart {
  readonly canvas: HTMLCanvasElement;
  private readonly ctx: CanvasRenderingContext2D;
  private layout: TraceLayout;
  private readonly opts: TimeChartOptions;
  private readonly x0: ScaleLinear<number, number>;
  private x: ScaleLinear<number, number>;
  private transform: ZoomTransform = zoomIdentity;
  private readonly zoomBehavior: ZoomBehavior<HTMLCanvasElement, unknown>;
  private readonly sel: Selection<HTMLCanvasElement, unknown, null, undefined>;
  private width = 0;
  private height = 0;
  private dpr = 1;
  private frame = 0;
  private charW = 6.6;
  private emphasis: Emphasis = { outlined: null, selected: null, service: null };
  private hovered: number | null = null;
  /** Frames drawn so far (the benchmark reads it). */
  frames = 0;

  constructor(canvas: HTMLCanvasElement, layout: TraceLayout, opts: TimeChartOptions = {}) {
    this.canvas = canvas;
    const ctx = canvas.getContext('2d', { alpha: false });
    if (!ctx) throw new Error('This browser cannot draw on a canvas, so the trace cannot be shown.');
    this.ctx = ctx;
    this.layout = layout;
    this.opts = opts;
    this.x0 = scaleLinear().domain([0, layout.durationUs]);
    this.x = this.x0.copy();

    this.zoomBehavior = zoom<HTMLCanvasElement, unknown>()
      // Zoom in until 1 µs spans the chart at most; never out beyond the whole trace.
      .scaleExtent([1, Math.max(2, layout.durationUs)])
      .on('zoom', (e: D3ZoomEvent<HTMLCanvasElement, unknown>) => {
        // x only: the vertical part of the transform is ignored.
        this.transform = e.transform;
        this.x = e.transform.rescaleX(this.x0);
        this.schedule();
      });
    this.sel = select(canvas);
    this.sel.call(this.zoomBehavior).on('dblclick.zoom', null);
    this.sel.on('mousemove.chart', (e: MouseEvent) => this.hover(e));
    this.sel.on('mouseleave.chart', () => {
      this.setHovered(null);
      this.opts.onHover?.(null, { x: 0, y: 0 });
    });
    this.sel.on('click.chart', (e: MouseEvent) => this.opts.onClick?.(this.hit(e)));
    this.resize();
  }

  /** Sizes the canvas to its CSS box (width) and the layout (height); redraws. */
  resize(): void {
    const cssWidth = Math.max(200, Math.floor(this.canvas.parentElement?.clientWidth ?? 800));
    const cssHeight = AXIS_HEIGHT + this.layout.rows.length * ROW_HEIGHT + 4;
    this.dpr = window.devicePixelRatio || 1;
    this.width = cssWidth;
    this.height = cssHeight;
    this.canvas.width = Math.round(cssWidth * this.dpr);
    this.canvas.height = Math.round(cssHeight * this.dpr);
    this.canvas.style.width = `${cssWidth}px`;
    this.canvas.style.height = `${cssHeight}px`;
    this.x0.range([0, cssWidth]);
    this.zoomBehavior.extent([
      [0, 0],
      [cssWidth, cssHeight],
    ]);
    this.zoomBehavior.translateExtent([
      [0, 0],
      [cssWidth, cssHeight],
    ]);
    this.x = this.transform.rescaleX(this.x0);
    this.ctx.font = `${FONT_PX}px ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace`;
    this.charW = this.ctx.measureText('0123456789').width / 10 || 6.6;
    this.schedule();
  }

  setEmphasis(e: Emphasis): void {
    this.emphasis = e;
    this.schedule();
  }

  /** Zooms so that [fromUs, toUs] fills the width. */
  zoomTo(fromUs: number, toUs: number): void {
    const k = this.layout.durationUs / Math.max(1, toUs - fromUs);
    const t = zoomIdentity.scale(k).translate(-this.x0(fromUs), 0);
    this.zoomBehavior.transform(this.sel, t);
  }

  resetZoom(): void {
    this.zoomBehavior.transform(this.sel, zoomIdentity);
  }

  /** The visible time window, µs since the trace's start. */
  visibleRange(): [number, number] {
    const [a, b] = this.x.domain();
    return [a!, b!];
  }

  destroy(): void {
    cancelAnimationFrame(this.frame);
    this.sel.on('.zoom', null).on('.chart', null);
  }

  /** Draws on the next animation frame (once, however many changes came before it). */
  schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  private hit(e: MouseEvent): Bar | null {
    const rect = this.canvas.getBoundingClientRect();
    const px = e.clientX - rect.left;
    const py = e.clientY - rect.top - AXIS_HEIGHT;
    if (py < 0) return null;
    const row = Math.floor(py / ROW_HEIGHT);
    if (py - row * ROW_HEIGHT > ROW_HEIGHT - BAR_GAP) return null;
    const t = this.x.invert(px);
    // Narrow bars are drawn at least 1 px wide: accept a pixel of slack.
    const slack = this.x.invert(px + 1) - t;
    return barAt(this.layout, row, t, slack);
  }

  private hover(e: MouseEvent): void {
    const bar = this.hit(e);
    this.setHovered(bar?.index ?? null);
    this.canvas.style.cursor = bar ? 'pointer' : 'default';
    this.opts.onHover?.(bar, { x: e.clientX, y: e.clientY });
  }

  private setHovered(index: number | null): void {
    if (index === this.hovered) return;
    this.hovered = index;
    this.schedule();
  }

  private draw(): void {
    const t0 = performance.now();
    const { ctx, width, height, layout, emphasis } = this;
    const x = this.x;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, width, height);

    // Depth bands: alternate shading so lanes of one depth read as one row.
    for (let d = 0; d < layout.depthRow.length; d++) {
      const first = layout.depthRow[d]!;
      const next = layout.depthRow[d + 1] ?? layout.rows.length;
      if (d % 2 === 1) {
        ctx.fillStyle = '#f6f7f9';
        ctx.fillRect(0, AXIS_HEIGHT + first * ROW_HEIGHT, width, (next - first) * ROW_HEIGHT);
      }
    }

    this.drawAxis();

    const [from, to] = x.domain() as [number, number];
    const fade = emphasis.service !== null || emphasis.outlined !== null;
    ctx.font = `${FONT_PX}px ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace`;
    ctx.textBaseline = 'middle';
    const outlines: Bar[] = [];
    for (let r = 0; r < layout.rows.length; r++) {
      const lane = layout.rows[r]!;
      const y = AXIS_HEIGHT + r * ROW_HEIGHT;
      const h = ROW_HEIGHT - BAR_GAP;
      // First bar that ends at or after `from` (bars in a lane do not overlap).
      let lo = 0;
      let hi = lane.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (lane[mid]!.x1 < from) lo = mid + 1;
        else hi = mid;
      }
      let lastPx = -Infinity;
      for (let i = lo; i < lane.length; i++) {
        const b = lane[i]!;
        if (b.x0 > to) break;
        const px0 = x(b.x0);
        const px1 = x(b.x1);
        const left = Math.max(px0, -1);
        const w = Math.max(1, Math.min(px1, width + 1) - left);
        // Many sub-pixel bars in a row collapse into one pixel column: draw it once.
        if (w <= 1 && Math.floor(left) === lastPx) continue;
        lastPx = Math.floor(left);
        const dim =
          fade &&
          !(emphasis.outlined?.has(b.index) ?? false) &&
          !(emphasis.service !== null && b.service === emphasis.service);
        if (dim) {
          // Faded towards white, opaque, so grid lines do not show through.
          ctx.globalAlpha = 1;
          ctx.fillStyle = '#ffffff';
          ctx.fillRect(left, y, w, h);
          ctx.globalAlpha = 0.28;
        } else ctx.globalAlpha = 1;
        ctx.fillStyle = b.color;
        ctx.fillRect(left, y, w, h);
        if (w >= ICON_W + 2) this.drawIcon(b, left, y, h);
        if (w > ICON_W + 24) this.drawLabel(b, left + ICON_W + 4, y + h / 2, w - ICON_W - 8);
        if (emphasis.outlined?.has(b.index) || b.index === this.hovered) outlines.push(b);
      }
    }
    ctx.globalAlpha = 1;
    for (const b of outlines) {
      const left = Math.max(x(b.x0), -1);
      const w = Math.max(1, Math.min(x(b.x1), width + 1) - left);
      const y = AXIS_HEIGHT + b.row * ROW_HEIGHT;
      const selected = b.index === emphasis.selected;
      ctx.strokeStyle = selected ? '#111111' : b.index === this.hovered ? '#444444' : '#1b1f24';
      ctx.lineWidth = selected ? 2.5 : 1.25;
      ctx.strokeRect(left + 0.5, y + 0.5, Math.max(1, w - 1), ROW_HEIGHT - BAR_GAP - 1);
    }
    this.frames++;
    this.opts.onDraw?.(performance.now() - t0);
  }

  private drawIcon(b: Bar, left: number, y: number, h: number): void {
    const { ctx } = this;
    ctx.fillStyle = 'rgba(255,255,255,0.92)';
    ctx.fillRect(left + 2, y + 3, ICON_W - 3, h - 6);
    ctx.fillStyle = b.node.kind === 'N' ? '#3c4043' : b.color;
    ctx.font = `bold ${FONT_PX}px ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace`;
    ctx.fillText(b.node.kind, left + 4.5, y + h / 2 + 0.5);
    ctx.font = `${FONT_PX}px ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace`;
  }

  private drawLabel(b: Bar, left: number, cy: number, room: number): void {
    const { ctx } = this;
    const fits = Math.floor(room / this.charW);
    if (fits < 3) return;
    const text = b.label.length <= fits ? b.label : `${b.label.slice(0, fits - 1)}…`;
    ctx.fillStyle = b.node.kind === 'N' ? '#1b1f24' : '#ffffff';
    ctx.fillText(text, left, cy + 0.5);
  }

  private drawAxis(): void {
    const { ctx, width } = this;
    const x = this.x;
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, width, AXIS_HEIGHT);
    ctx.strokeStyle = '#d8dde3';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(0, AXIS_HEIGHT - 0.5);
    ctx.lineTo(width, AXIS_HEIGHT - 0.5);
    ctx.stroke();
    ctx.font = `${FONT_PX}px ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace`;
    ctx.textBaseline = 'middle';
    const ticks = x.ticks(Math.max(2, Math.floor(width / 110)));
    const [a, b] = x.domain() as [number, number];
    const span = b - a;
    const unitMs = span >= 2_000; // µs below 2 ms of view, else ms
    for (const t of ticks) {
      const px = Math.round(x(t)) + 0.5;
      ctx.strokeStyle = '#eceff2';
      ctx.beginPath();
      ctx.moveTo(px, AXIS_HEIGHT);
      ctx.lineTo(px, this.height);
      ctx.stroke();
      ctx.strokeStyle = '#9aa0a6';
      ctx.beginPath();
      ctx.moveTo(px, AXIS_HEIGHT - 5);
      ctx.lineTo(px, AXIS_HEIGHT);
      ctx.stroke();
      ctx.fillStyle = '#6a737d';
      const label = unitMs ? `${formatTick(t / 1000)} ms` : `${formatTick(t)} µs`;
      ctx.fillText(label, px + 3, AXIS_HEIGHT / 2 - 2);
    }
  }
}

function formatTick(v: number): string {
  if (v === 0) return '0';
  const abs = Math.abs(v);
  return abs >= 100
    ? v.toFixed(0)
    : abs >= 10
      ? v.toFixed(1).replace(/\.0$/, '')
      : v.toPrecision(3).replace(/\.?0+$/, '');
}
