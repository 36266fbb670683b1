// The time-axis flame chart on a canvas: x is wall-clock time from the trace's start to
// its end (d3-scale, zoomed and panned on x with d3-zoom), rows are depth. Redraws at
// most once per animation frame and draws only the bars in view; hover and click are
// hit-tested against the layout's rows (binary search), not against the pixels.
// The canvas is only as tall as its scroll box (it sticks to the box's top; a spacer
// gives the box the full height): rows are scrolled by redrawing, so a deep trace
// costs no more per frame than a shallow one.

import { scaleLinear, type ScaleLinear } from 'd3-scale';
import { select, type Selection } from 'd3-selection';
import { zoom, zoomIdentity, type D3ZoomEvent, type ZoomBehavior, type ZoomTransform } from 'd3-zoom';
import { barAt, barLabel, type Bar, type TraceLayout } from './model.ts';

export const ROW_HEIGHT = 22;
export const AXIS_HEIGHT = 24;
const BAR_GAP = 2;
const FONT_PX = 11;
const FONT = `${FONT_PX}px ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace`;
const BOLD = `bold ${FONT}`;
const ICON_W = 15;
/** Amber: stands out against every service colour and the grey of N spans. */
const START_COLOR = '#f5a000';

export interface TimeChartOptions {
  /** Sized to the rows' full height below the canvas, inside the canvas's scroll box. */
  spacer?: HTMLElement;
  /** Tallest the scroll box may be, px (default 62% of the window). */
  maxHeight?: () => number;
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
  /** The span the trace was opened from, marked with a dashed amber outline. */
  start?: number | null;
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
  private scrollTop = 0;
  private readonly scroller: HTMLElement | null;
  private readonly onScroll = (): void => {
    this.scrollTop = this.scroller?.scrollTop ?? 0;
    this.schedule();
  };
  private readonly onShiftWheel = (e: WheelEvent): void => {
    // Shift + wheel scrolls the rows (plain wheel zooms, see the zoom filter).
    if (!e.shiftKey || !this.scroller) return;
    e.preventDefault();
    this.scroller.scrollTop += e.deltaY || e.deltaX;
  };
  private dpr = 1;
  private frame = 0;
  private charW = 6.6;
  private emphasis: Emphasis = { outlined: null, selected: null, service: null };
  private hovered: number | null = null;
  /** Labels by bar index, built on first draw (most bars are never wide enough). */
  private readonly labels = new Map<number, string>();
  /** Per-frame scratch: bars that get an icon, a label, an outline. */
  private icons: { b: Bar; left: number; y: number; alpha: number }[] = [];
  private texts: { b: Bar; left: number; y: number; room: number; alpha: number }[] = [];
  /** Frames drawn so far, and how long the last one took (ms); the benchmark reads them. */
  frames = 0;
  lastDrawMs = 0;

  constructor(canvas: HTMLCanvasElement, layout: TraceLayout, opts: TimeChartOptions = {}) {
    this.canvas = canvas;
    const ctx = canvas.getContext('2d', { alpha: false });
    if (!ctx) throw new Error('This browser cannot draw on a canvas, so the trace cannot be shown.');
    this.ctx = ctx;
    this.layout = layout;
    this.opts = opts;
    this.x0 = scaleLinear().domain([0, layout.durationUs]);
    this.x = this.x0.copy();

    this.scroller = canvas.parentElement;
    this.zoomBehavior = zoom<HTMLCanvasElement, unknown>()
      .filter((e: Event) => (e.type === 'wheel' ? !(e as WheelEvent).shiftKey : !(e as MouseEvent).button))
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
    // Double-click a bar: zoom to it, with a margin either side.
    this.sel.on('dblclick.chart', (e: MouseEvent) => {
      const b = this.hit(e);
      if (!b) return;
      const pad = Math.max(1, (b.x1 - b.x0) * 0.05);
      this.zoomTo(Math.max(0, b.x0 - pad), Math.min(this.layout.durationUs, b.x1 + pad));
    });
    canvas.addEventListener('wheel', this.onShiftWheel, { passive: false });
    this.scroller?.addEventListener('scroll', this.onScroll, { passive: true });
    this.resize();
  }

  /** Sizes the canvas to its scroll box (width) and the visible rows (height); redraws. */
  resize(): void {
    const cssWidth = Math.max(200, Math.floor(this.scroller?.clientWidth ?? 800));
    const fullHeight = AXIS_HEIGHT + this.layout.rows.length * ROW_HEIGHT + 4;
    const maxHeight = this.opts.maxHeight?.() ?? Math.round(window.innerHeight * 0.62);
    const cssHeight = Math.max(AXIS_HEIGHT + ROW_HEIGHT * 3, Math.min(fullHeight, maxHeight));
    if (this.scroller) this.scroller.style.height = `${cssHeight}px`;
    if (this.opts.spacer) this.opts.spacer.style.height = `${Math.max(0, fullHeight - cssHeight)}px`;
    this.scrollTop = this.scroller?.scrollTop ?? 0;
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
    this.ctx.font = FONT;
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
    this.canvas.removeEventListener('wheel', this.onShiftWheel);
    this.scroller?.removeEventListener('scroll', this.onScroll);
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
    const py = e.clientY - rect.top - AXIS_HEIGHT + this.scrollTop;
    if (e.clientY - rect.top < AXIS_HEIGHT) return null;
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

    const top = AXIS_HEIGHT - this.scrollTop;
    const firstRow = Math.max(0, Math.floor(this.scrollTop / ROW_HEIGHT));
    const lastRow = Math.min(layout.rows.length - 1, Math.ceil((this.scrollTop + height - AXIS_HEIGHT) / ROW_HEIGHT));
    // Depth bands: alternate shading so lanes of one depth read as one row.
    for (let d = 1; d < layout.depthRow.length; d += 2) {
      const first = layout.depthRow[d]!;
      const next = layout.depthRow[d + 1] ?? layout.rows.length;
      if (next <= firstRow || first > lastRow) continue;
      ctx.fillStyle = '#f6f7f9';
      ctx.fillRect(0, top + first * ROW_HEIGHT, width, (next - first) * ROW_HEIGHT);
    }

    this.drawGrid();

    const [from, to] = x.domain() as [number, number];
    const fade = emphasis.service !== null || emphasis.outlined !== null;
    ctx.textBaseline = 'middle';
    const outlines: Bar[] = [];
    for (let r = firstRow; r <= lastRow; r++) {
      const lane = layout.rows[r]!;
      const y = top + r * ROW_HEIGHT;
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
        const alpha = dim ? 0.28 : 1;
        if (w >= ICON_W + 2) this.icons.push({ b, left, y, alpha });
        if (w > ICON_W + 24) this.texts.push({ b, left: left + ICON_W + 4, y, room: w - ICON_W - 8, alpha });
        if (emphasis.outlined?.has(b.index) || b.index === this.hovered || b.index === emphasis.start) outlines.push(b);
      }
    }
    // Icons, then labels: one font change each per frame (setting ctx.font is costly).
    ctx.font = BOLD;
    for (const { b, left, y, alpha } of this.icons) this.drawIcon(b, left, y, alpha);
    ctx.font = FONT;
    for (const t of this.texts) this.drawLabel(t.b, t.left, t.y + (ROW_HEIGHT - BAR_GAP) / 2, t.room, t.alpha);
    this.icons = [];
    this.texts = [];
    ctx.globalAlpha = 1;
    for (const b of outlines) {
      const left = Math.max(x(b.x0), -1);
      const w = Math.max(1, Math.min(x(b.x1), width + 1) - left);
      const y = top + b.row * ROW_HEIGHT;
      const selected = b.index === emphasis.selected;
      const plain = !selected && b.index !== this.hovered && !(emphasis.outlined?.has(b.index) ?? false);
      if (plain && b.index === emphasis.start) {
        ctx.strokeStyle = START_COLOR;
        ctx.lineWidth = 2;
        ctx.setLineDash([4, 3]);
      } else {
        ctx.strokeStyle = selected ? '#111111' : b.index === this.hovered ? '#444444' : '#1b1f24';
        ctx.lineWidth = selected ? 2.5 : 1.25;
      }
      ctx.strokeRect(left + 0.5, y + 0.5, Math.max(1, w - 1), ROW_HEIGHT - BAR_GAP - 1);
      ctx.setLineDash([]);
    }
    this.drawAxis();
    this.frames++;
    this.lastDrawMs = performance.now() - t0;
    this.opts.onDraw?.(this.lastDrawMs);
  }

  private drawIcon(b: Bar, left: number, y: number, alpha: number): void {
    const { ctx } = this;
    const h = ROW_HEIGHT - BAR_GAP;
    ctx.globalAlpha = alpha;
    ctx.fillStyle = 'rgba(255,255,255,0.92)';
    ctx.fillRect(left + 2, y + 3, ICON_W - 3, h - 6);
    ctx.fillStyle = b.node.kind === 'N' ? '#3c4043' : b.color;
    ctx.fillText(b.node.kind, left + 4.5, y + h / 2 + 0.5);
  }

  private drawLabel(b: Bar, left: number, cy: number, room: number, alpha: number): void {
    const { ctx } = this;
    const fits = Math.floor(room / this.charW);
    if (fits < 3) return;
    let label = this.labels.get(b.index);
    if (label === undefined) {
      label = barLabel(b);
      this.labels.set(b.index, label);
    }
    const text = label.length <= fits ? label : `${label.slice(0, fits - 1)}…`;
    ctx.globalAlpha = alpha;
    ctx.fillStyle = b.node.kind === 'N' ? '#1b1f24' : '#ffffff';
    ctx.fillText(text, left, cy + 0.5);
  }

  /** Tick positions and labels for the visible time window. */
  private ticks(): { px: number; label: string }[] {
    const x = this.x;
    const [a, b] = x.domain() as [number, number];
    const unitMs = b - a >= 2_000; // µs below 2 ms of view, else ms
    return x.ticks(Math.max(2, Math.floor(this.width / 110))).map((t) => ({
      px: Math.round(x(t)) + 0.5,
      label: unitMs ? `${formatTick(t / 1000)} ms` : `${formatTick(t)} µs`,
    }));
  }

  /** Vertical grid lines, under the bars. */
  private drawGrid(): void {
    const { ctx } = this;
    ctx.strokeStyle = '#eceff2';
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (const { px } of this.ticks()) {
      ctx.moveTo(px, AXIS_HEIGHT);
      ctx.lineTo(px, this.height);
    }
    ctx.stroke();
  }

  /** The time axis strip, over the bars (rows scroll under it). */
  private drawAxis(): void {
    const { ctx, width } = this;
    ctx.globalAlpha = 1;
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, width, AXIS_HEIGHT);
    ctx.strokeStyle = '#d8dde3';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(0, AXIS_HEIGHT - 0.5);
    ctx.lineTo(width, AXIS_HEIGHT - 0.5);
    ctx.stroke();
    ctx.font = FONT;
    ctx.textBaseline = 'middle';
    ctx.strokeStyle = '#9aa0a6';
    ctx.fillStyle = '#6a737d';
    for (const { px, label } of this.ticks()) {
      ctx.beginPath();
      ctx.moveTo(px, AXIS_HEIGHT - 5);
      ctx.lineTo(px, AXIS_HEIGHT);
      ctx.stroke();
      // A label that would run off the right edge is left out (its tick stays).
      if (px + 3 + label.length * this.charW <= width) ctx.fillText(label, px + 3, AXIS_HEIGHT / 2 - 2);
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
