// Benchmark: the trace view with a 5,000-span trace, in Debian's headless Chromium on
// the built renderer (web mode). Prints, against the DESIGN.md budgets:
//   - first paint: from the moment the renderer has the Trace (the `trace:get` answer
//     is parsed) until the first frame of the chart is painted (a task queued by the
//     animation frame that drew it runs after that frame's paint), median over several
//     opens; also click → painted;
//   - pan and zoom: wheel and drag events dispatched on the chart once per animation
//     frame for a few seconds; delivered frames per second, frame-interval p95, and
//     the chart's own draw time per frame.
// The Trace is a hand-built fixture (test/support/trace-fixtures.ts: gateway fan-out
// in waves, S/N/S/A chains, concurrent A steps) handed over the real web bridge.
//
//   npx vite build && node test/bench/flame-paint.ts [--spans 5000] [--runs 7] [--frames 240]

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ApiHandlers } from '../../main/api/contract.ts';
import { createCore } from '../../main/core/core.ts';
import { APP_ROOT, RENDERER_DIR } from '../../main/paths.ts';
import { startWebServer } from '../../main/web/server.ts';
import { launchChromium } from '../support/browser.ts';
import { largeTrace } from '../support/trace-fixtures.ts';

const ARTIFACTS = join(APP_ROOT, 'test', 'artifacts');
const PAINT_BUDGET_MS = 300;
const FPS_BUDGET = 60;
const { values } = parseArgs({
  options: {
    spans: { type: 'string', default: '5000' },
    runs: { type: 'string', default: '7' },
    frames: { type: 'string', default: '240' },
  },
});
const RUNS = Number(values.runs);
const FRAMES = Number(values.frames);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

const trace = largeTrace(Number(values.spans), (Date.now() - 60_000) * 1000);
const dir = mkdtempSync(join(tmpdir(), 'tapdeck-bench-flame-'));
const core = await createCore({ dbPath: join(dir, 'bench.sqlite'), mode: 'web' });
const captureId = await core.store.createCapture({ target: 'root@gw-1:22', startedAtUs: trace.startUs });
// The request log shows the trace's first span; opening it answers the fixture.
const { id: _id, capture_id: _c, ...rootSpan } = trace.roots[0]!.span;
core.store.appendSpans(captureId, [rootSpan]);
await core.store.flush();
const handlers: ApiHandlers = { ...core.handlers, 'trace:get': () => Promise.resolve(trace) };
const server = await startWebServer({ core: { handlers, events: core.events }, rendererDir: RENDERER_DIR });
const context = await launchChromium(dir);

try {
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(server.url);
  const row = page.locator('table.log tbody tr').first();
  await row.waitFor();

  const paint: number[] = [];
  const drawn: number[] = [];
  const clickToPaint: number[] = [];
  for (let run = 0; run < RUNS + 1; run++) {
    await page.evaluate(() => performance.clearMarks());
    const t0 = await page.evaluate(() => performance.now());
    await row.locator('td.c-path').click();
    await page.waitForFunction(() => performance.getEntriesByName('tapdeck:trace-painted').length > 0, null, {
      timeout: 30_000,
    });
    const m = await page.evaluate(() => {
      const at = (n: string): number => performance.getEntriesByName(n)[0]!.startTime;
      return {
        received: at('tapdeck:trace-received'),
        drawn: at('tapdeck:trace-drawn'),
        painted: at('tapdeck:trace-painted'),
      };
    });
    if (run > 0) {
      // Run 0 warms up the JIT and the font cache; not counted.
      paint.push(m.painted - m.received);
      drawn.push(m.drawn - m.received);
      clickToPaint.push(m.painted - t0);
    }
    if (run < RUNS) {
      await page.getByRole('button', { name: '← Request log' }).click();
      await page.locator('section.trace-view').waitFor({ state: 'detached' });
    }
  }

  await page.locator('.where-time-went svg').waitFor();
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, 'trace-5000.png'), fullPage: true });

  // Pan and zoom: one input event per animation frame, as a trackpad or wheel sends them.
  const motion = await page.evaluate(async (frames: number) => {
    type Chart = { frames: number; lastDrawMs: number };
    const canvas = document.querySelector<HTMLCanvasElement & { tapdeckChart?: Chart }>('[data-testid=trace-chart]')!;
    const chart = canvas.tapdeckChart!;
    const r = canvas.getBoundingClientRect();
    const cy = r.top + Math.min(r.height / 2, 200);
    const stamps: number[] = [];
    const draws: number[] = [];
    const framesBefore = chart.frames;
    let lastFrames = chart.frames;
    let dragging = false;
    await new Promise<void>((done) => {
      let i = 0;
      const tick = (ts: number): void => {
        stamps.push(ts);
        if (chart.frames !== lastFrames) {
          draws.push(chart.lastDrawMs);
          lastFrames = chart.frames;
        }
        const phase = Math.floor((i / frames) * 4); // zoom in, pan right, pan left, zoom out
        const cx = r.left + r.width * (0.3 + 0.4 * ((i % 60) / 60));
        if (phase === 0 || phase === 3) {
          canvas.dispatchEvent(
            new WheelEvent('wheel', {
              deltaY: phase === 0 ? -40 : 40,
              clientX: cx,
              clientY: cy,
              bubbles: true,
              cancelable: true,
              view: window,
            }),
          );
        } else {
          const x = r.left + r.width / 2 + (phase === 1 ? -1 : 1) * ((i % 60) * 6 - 180);
          if (!dragging) {
            canvas.dispatchEvent(
              new MouseEvent('mousedown', { clientX: x, clientY: cy, button: 0, bubbles: true, view: window }),
            );
            dragging = true;
          } else {
            window.dispatchEvent(new MouseEvent('mousemove', { clientX: x, clientY: cy, bubbles: true, view: window }));
          }
          if (i % 60 === 59) {
            window.dispatchEvent(new MouseEvent('mouseup', { clientX: x, clientY: cy, bubbles: true, view: window }));
            dragging = false;
          }
        }
        if (++i <= frames) requestAnimationFrame(tick);
        else done();
      };
      requestAnimationFrame(tick);
    });
    return { stamps, draws, drawnFrames: chart.frames - framesBefore };
  }, FRAMES);

  // A 30 ms window in the middle of the trace, to look at.
  await page.evaluate(() => {
    const c = document.querySelector<HTMLCanvasElement & { tapdeckChart?: { zoomTo(a: number, b: number): void } }>(
      '[data-testid=trace-chart]',
    )!;
    c.tapdeckChart!.zoomTo(400_000, 430_000);
  });
  await page.waitForTimeout(100);
  await page.screenshot({ path: join(ARTIFACTS, 'trace-5000-zoomed.png') });

  // Control: the same number of animation frames with no input, on this machine now.
  const idle = await page.evaluate(
    (frames: number) =>
      new Promise<number[]>((done) => {
        const stamps: number[] = [];
        const tick = (ts: number): void => {
          stamps.push(ts);
          if (stamps.length <= frames) requestAnimationFrame(tick);
          else done(stamps);
        };
        requestAnimationFrame(tick);
      }),
    FRAMES,
  );
  const idleIntervals = idle.slice(1).map((t, i) => t - idle[i]!);
  const idleFps = (idleIntervals.length / (idle.at(-1)! - idle[0]!)) * 1000;

  const intervals = motion.stamps.slice(1).map((t, i) => t - motion.stamps[i]!);
  const elapsed = motion.stamps.at(-1)! - motion.stamps[0]!;
  const fps = (intervals.length / elapsed) * 1000;
  const paintMs = median(paint);

  console.log(
    `flame graph: ${trace.spanCount.toLocaleString('en-US')} spans, ${RUNS} opens (after 1 warm-up); load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} on this machine`,
  );
  console.log(
    `first paint (trace received → first frame on screen): median ${paintMs.toFixed(1)} ms (min ${Math.min(...paint).toFixed(1)}, max ${Math.max(...paint).toFixed(1)}); budget ${PAINT_BUDGET_MS} ms; ratio ${(paintMs / PAINT_BUDGET_MS).toFixed(2)}x of budget`,
  );
  console.log(`  of which received → chart drawn: median ${median(drawn).toFixed(1)} ms`);
  console.log(
    `  click in the request log → painted (adds the trace:get round trip and JSON of the trace): median ${median(clickToPaint).toFixed(1)} ms`,
  );
  console.log(
    `pan/zoom: ${intervals.length} frames with one wheel or drag event each, ${fps.toFixed(1)} fps (budget ${FPS_BUDGET}; ratio ${(fps / FPS_BUDGET).toFixed(2)}x), frame interval median ${median(intervals).toFixed(1)} ms, p95 ${pct(intervals, 95).toFixed(1)} ms, max ${Math.max(...intervals).toFixed(1)} ms`,
  );
  console.log(
    `  control, same page with no input: ${idleFps.toFixed(1)} fps, frame interval p95 ${pct(idleIntervals, 95).toFixed(1)} ms (load from other processes on this machine shows here)`,
  );
  console.log(
    `  chart redraws: ${motion.drawnFrames}, draw time median ${median(motion.draws).toFixed(2)} ms, p95 ${pct(motion.draws, 95).toFixed(2)} ms (a 60 fps frame has 16.7 ms)`,
  );
} finally {
  await context.close();
  await server.close();
  await core.close();
  rmSync(dir, { recursive: true, force: true });
}
