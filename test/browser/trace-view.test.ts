// The trace view in Debian's Chromium (web mode), against a real core on a temporary
// capture file: a request's S span chain (gateway nginx → orders → inventory, as the
// collector emits them, through the real Store) is opened from the request log and
// assembled by the core's trace:get (main/trace: X-Request-ID, syscall trace ids, TCP
// sequence numbers); a
// hover shows the span's call, instance and time; a click outlines the span and its
// ancestors and lists every field; a service in the list highlights its spans.
// Screenshots go to test/artifacts/trace-*.png.
//
// Needs the built renderer: `npx vite build` (or `npm run build`) first.

import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SPAN_FIELDS, type Span } from '../../main/api/records.ts';
import { AXIS_HEIGHT, ROW_HEIGHT } from '../../app/src/trace/time-chart.ts';
import { createCore, type Core } from '../../main/core/core.ts';
import { APP_ROOT, RENDERER_DIR } from '../../main/paths.ts';
import { startWebServer, type WebServer } from '../../main/web/server.ts';
import { launchChromium } from '../support/browser.ts';
import { gatewayTraffic, makeSpan } from '../unit/web/span-fixtures.ts';

const ARTIFACTS = join(APP_ROOT, 'test', 'artifacts');
const XRID = '5e1f0c3a-7d2b-4c19-8f00-c0ffee000042';
const T0 = (Date.now() - 2 * 60_000) * 1000;

/** One S span as the collector emits it, at a given process and node. */
function sSpan(o: {
  op: 's-p' | 'c-p';
  path: string;
  at: number;
  dur: number;
  node: string;
  process: string;
  pid: number;
  client: [string, number];
  server: [string, number];
  host: string;
  /** Thread-based ids of the request's and the response's first syscalls. */
  syscall: [number, number];
  /** TCP sequence numbers of the request's and the response's first bytes. */
  seq: [number, number];
}): Span {
  return {
    ...makeSpan({
      op: o.op,
      method: 'GET',
      path: o.path,
      code: 200,
      xrid: XRID,
      startUs: T0 + o.at,
      durationUs: o.dur,
      host: o.host,
      process: o.process,
      pid: o.pid,
    }),
    node: o.node,
    client_ip: o.client[0],
    client_port: o.client[1],
    server_ip: o.server[0],
    server_port: o.server[1],
    syscall_trace_id_request: o.syscall[0],
    syscall_trace_id_response: o.syscall[1],
    req_tcp_seq: o.seq[0],
    resp_tcp_seq: o.seq[1],
  };
}

// Client → gateway (nginx s-p, then its c-p to orders) → orders (node s-p, then its
// c-p to inventory) → inventory (java s-p). Times: µs after T0. Per thread, an ingress
// after an egress starts a new syscall trace id (STREAM.md), so a process's inbound
// request and its outbound call share one id, its upstream's answer and its own answer
// the next; caller and callee of one exchange share TCP sequence numbers.
const ID = 0x5a5a5_0000_0000;
const GW = { node: 'gw-1', process: 'nginx', pid: 4211 };
const ORDERS = { node: 'svc-a', process: 'node', pid: 812 };
const INVENTORY = { node: 'svc-b', process: 'java', pid: 1290 };
const toOrders = { client: ['198.18.0.20', 40312], server: ['198.18.0.30', 8080], host: 'orders.internal' } as const;
const toInventory = {
  client: ['198.18.0.30', 45001],
  server: ['198.18.0.40', 8080],
  host: 'inventory.internal',
} as const;
const CHAIN: Span[] = [
  sSpan({
    ...GW,
    op: 's-p',
    path: '/api/v1/orders/77',
    at: 0,
    dur: 30_000,
    client: ['198.18.0.10', 51234],
    server: ['198.18.0.20', 80],
    host: 'api.shop.example',
    syscall: [ID + 1, ID + 2],
    seq: [1_000_001, 2_000_001],
  }),
  sSpan({
    ...GW,
    ...toOrders,
    client: [...toOrders.client],
    server: [...toOrders.server],
    op: 'c-p',
    path: '/orders/77',
    at: 500,
    dur: 28_600,
    syscall: [ID + 1, ID + 2],
    seq: [3_000_001, 4_000_001],
  }),
  sSpan({
    ...ORDERS,
    ...toOrders,
    client: [...toOrders.client],
    server: [...toOrders.server],
    op: 's-p',
    path: '/orders/77',
    at: 900,
    dur: 27_800,
    syscall: [ID + 11, ID + 12],
    seq: [3_000_001, 4_000_001],
  }),
  sSpan({
    ...ORDERS,
    ...toInventory,
    client: [...toInventory.client],
    server: [...toInventory.server],
    op: 'c-p',
    path: '/stock?order=77',
    at: 6_000,
    dur: 12_400,
    syscall: [ID + 11, ID + 12],
    seq: [5_000_001, 6_000_001],
  }),
  sSpan({
    ...INVENTORY,
    ...toInventory,
    client: [...toInventory.client],
    server: [...toInventory.server],
    op: 's-p',
    path: '/stock?order=77',
    at: 6_400,
    dur: 11_600,
    syscall: [ID + 21, ID + 21],
    seq: [5_000_001, 6_000_001],
  }),
];

let dir: string;
let core: Core;
let server: WebServer;
let context: BrowserContext;
let page: Page;
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!existsSync(join(RENDERER_DIR, 'index.html'))) {
    throw new Error(`The renderer is not built (${RENDERER_DIR} has no index.html): run \`npx vite build\` first.`);
  }
  dir = mkdtempSync(join(tmpdir(), 'tapdeck-trace-'));
  core = await createCore({ dbPath: join(dir, 'capture.sqlite'), mode: 'web' });
  const captureId = await core.store.createCapture({ target: 'root@gw-1:22', startedAtUs: T0 - 60_000_000 });
  // Other traffic before and after, so the trace is picked out of a real log.
  core.store.appendSpans(captureId, gatewayTraffic(6, T0 - 30_000_000));
  core.store.appendSpans(captureId, CHAIN);
  core.store.appendSpans(captureId, gatewayTraffic(4, T0 + 1_000_000));
  await core.store.flush();
  server = await startWebServer({
    core,
    host: '127.0.0.1',
    rendererDir: RENDERER_DIR,
  });
  context = await launchChromium(dir);
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(m.text());
  });
  mkdirSync(ARTIFACTS, { recursive: true });
});

afterAll(async () => {
  await context?.close();
  await server?.close();
  await core?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const chart = () => page.getByTestId('trace-chart');
const tooltip = () => page.getByTestId('trace-tooltip');
const details = () => page.getByTestId('span-details');

/** Where a span of CHAIN is drawn, `frac` of the way along its bar, from its time and row. */
async function barPoint(i: number, row: number, frac = 0.5): Promise<{ x: number; y: number }> {
  const box = (await chart().boundingBox())!;
  const start = T0;
  const end = Math.max(...CHAIN.map((s) => s.end_time_us));
  const s = CHAIN[i]!;
  const mid = s.start_time_us + (s.end_time_us - s.start_time_us) * frac;
  return {
    x: box.x + ((mid - start) / (end - start)) * box.width,
    y: box.y + AXIS_HEIGHT + row * ROW_HEIGHT + ROW_HEIGHT / 2 - 1,
  };
}

/** The colour drawn at a point of the chart, as [r, g, b]. */
async function pixel(p: { x: number; y: number }): Promise<number[]> {
  const box = (await chart().boundingBox())!;
  return page.evaluate(
    ([x, y]) => {
      const c = document.querySelector<HTMLCanvasElement>('[data-testid=trace-chart]')!;
      const k = c.width / c.getBoundingClientRect().width;
      return [...c.getContext('2d')!.getImageData(Math.round(x! * k), Math.round(y! * k), 1, 1).data].slice(0, 3);
    },
    [p.x - box.x, p.y - box.y],
  );
}
const brightness = (rgb: number[]): number => rgb.reduce((a, b) => a + b, 0) / 3;

describe('trace view in the browser (web mode)', () => {
  it('opens the trace of a request from the request log', async () => {
    await page.goto(server.url);
    const row = page.locator('table.log tbody tr').filter({ hasText: '/api/v1/orders/77' });
    await expect.poll(() => row.count()).toBe(1);
    await row.locator('td.c-path').click();

    await expect.poll(() => page.getByRole('heading', { level: 2 }).textContent()).toMatch(/^Trace of span #\d+$/);
    expect(await page.locator('section.request-log').isHidden()).toBe(true);
    const summary = await page.locator('.trace-summary').textContent();
    expect(summary).toContain('HTTP GET /api/v1/orders/77');
    expect(summary).toContain('5 spans · 30.0 ms');
    await expect
      .poll(async () => (await chart().boundingBox())?.height ?? 0)
      .toBeGreaterThan(AXIS_HEIGHT + 5 * ROW_HEIGHT);
    // The span it was opened from (here the root) has a dashed amber outline.
    const box = (await chart().boundingBox())!;
    const rootTopEdge = { x: box.x + 2.2, y: box.y + AXIS_HEIGHT + 0.2 };
    const amber = [0xf5, 0xa0, 0x00];
    await expect.poll(async () => (await pixel(rootTopEdge)).every((c, i) => Math.abs(c - amber[i]!) <= 12)).toBe(true);
    // The aggregated view draws after the chart, then animates for a moment.
    await expect.poll(() => page.locator('.where-time-went .d3-flame-graph-label').allTextContents()).toContain('node');
    await page.waitForTimeout(600); // for the screenshot only: let the animation end
    await page.screenshot({ path: join(ARTIFACTS, 'trace-view.png'), fullPage: true });
  });

  it('shows call, instance, duration and self time on hover', async () => {
    // inventory's s-p (java on svc-b) is the deepest span: row 4.
    const p = await barPoint(4, 4);
    await page.mouse.move(p.x, p.y);
    await expect.poll(() => tooltip().isVisible()).toBe(true);
    const text = (await tooltip().textContent()) ?? '';
    expect(text).toContain('S HTTP GET /stock?order=77');
    expect(text).toContain('process java (pid 1290) · node svc-b');
    expect(text).toContain('11.6 ms · self 11.6 ms (100% self time)');

    // The orders process: 27.8 ms, of which its call to inventory (12.4 ms) is not its own.
    const q = await barPoint(2, 2, 0.3);
    await page.mouse.move(q.x, q.y);
    await expect.poll(() => tooltip().textContent()).toContain('process node (pid 812) · node svc-a');
    expect(await tooltip().textContent()).toContain('27.8 ms · self 15.4 ms (55% self time)');
    await page.screenshot({ path: join(ARTIFACTS, 'trace-hover.png') });
  });

  it('click outlines the span and its ancestors and lists every field', async () => {
    const p = await barPoint(3, 3); // orders' call to inventory (node c-p)
    await page.mouse.click(p.x, p.y);
    await expect.poll(() => details().isVisible()).toBe(true);
    const field = (name: string) => details().locator(`[data-field="${name}"] dd`).textContent();
    expect(await field('observation_point')).toBe('c-p');
    expect(await field('request_resource')).toBe('/stock?order=77');
    expect(await field('process_name')).toBe('node');
    expect(await field('server_ip')).toBe('198.18.0.40');
    expect(await field('x_request_id_0')).toBe(XRID);
    expect(await field('response_code')).toBe('200');
    // Every record field is listed (is_tls too, since schema 3), plus the row id and capture.
    expect(await details().locator('[data-field]').count()).toBe(SPAN_FIELDS.length + 2);
    // Its ancestors, root first.
    expect(
      await details().getByRole('navigation', { name: 'Ancestors' }).getByRole('button').allTextContents(),
    ).toEqual(['S HTTP GET /api/v1/orders/77', 'S HTTP GET /orders/77', 'S HTTP GET /orders/77']);

    // On the chart: ancestors keep their colour and get a dark outline; the child (not
    // an ancestor) is faded towards white.
    const box = (await chart().boundingBox())!;
    const rootLeftEdge = { x: box.x + 0.2, y: box.y + AXIS_HEIGHT + 6 };
    await expect.poll(async () => brightness(await pixel(rootLeftEdge))).toBeLessThan(60);
    const childFill = brightness(await pixel(await barPoint(4, 4, 0.95)));
    const ancestorFill = brightness(await pixel(await barPoint(2, 2, 0.95)));
    expect(childFill).toBeGreaterThan(170);
    expect(ancestorFill).toBeLessThan(150);
    await page.mouse.move(box.x + box.width - 5, box.y + 5); // tooltip off the screenshot
    await page.screenshot({ path: join(ARTIFACTS, 'trace-details.png'), fullPage: true });
  });

  it('lists services by share of the time and highlights one on click', async () => {
    await page.getByRole('button', { name: 'Close span details' }).click();
    await expect.poll(() => details().count()).toBe(0);
    const services = page.locator('.service-list button.service');
    // Self time: node 15.4 + 0.8 ms, java 11.6 ms, nginx 1.4 + 0.8 ms, of 30 ms.
    expect(await services.locator('.service-name').allTextContents()).toEqual(['node', 'java', 'nginx']);
    expect(await services.locator('.service-share').allTextContents()).toEqual(['54%', '39%', '7.3%']);

    const root = await barPoint(0, 0, 0.98);
    const java = await barPoint(4, 4, 0.95);
    const before = { root: brightness(await pixel(root)), java: brightness(await pixel(java)) };
    await services.filter({ hasText: 'java' }).click();
    expect(await services.filter({ hasText: 'java' }).getAttribute('aria-pressed')).toBe('true');
    // nginx's bar fades; java's keeps its colour.
    await expect.poll(async () => brightness(await pixel(root))).toBeGreaterThan(before.root + 60);
    expect(brightness(await pixel(java))).toBe(before.java);

    // The aggregated view: self time by service, then endpoint.
    const frames = page.getByTestId('where-time-went').locator('g.frame');
    await expect.poll(() => frames.count()).toBeGreaterThanOrEqual(7); // root, 3 services, their endpoints
    const javaFrame = page.getByTestId('where-time-went').locator('g.frame[name="java"] title');
    expect(await javaFrame.textContent()).toBe('java: 11.6 ms self time (39%)');
    await page.screenshot({ path: join(ARTIFACTS, 'trace-services.png'), fullPage: true });
  });

  it('zooms with the wheel around the pointer, pans by dragging, zooms to a span on double-click', async () => {
    await page.locator('.service-list button.service').filter({ hasText: 'java' }).click(); // clear the highlight
    const box = (await chart().boundingBox())!;
    const java = await barPoint(4, 4, 0.5); // inventory's s-p: 6.4 → 18 ms of 30 ms
    const probe = { x: box.x + 0.18 * box.width, y: java.y + 5 }; // left of its start
    const isJava = async (): Promise<boolean> => {
      const [r, g, b] = await pixel(probe);
      return g! > r! + 40 && g! > b! + 40; // its green, not the white background
    };
    await expect.poll(isJava).toBe(false);

    // Wheel up over the bar's middle: the axis stretches around the pointer, the bar
    // now covers the probe.
    await page.mouse.move(java.x, java.y);
    await page.mouse.wheel(0, -300);
    await expect.poll(isJava).toBe(true);
    // Drag right: the bar moves right, off the probe again.
    await page.mouse.down();
    await page.mouse.move(java.x + 300, java.y, { steps: 6 });
    await page.mouse.up();
    await expect.poll(isJava).toBe(false);

    await page.getByRole('button', { name: 'Reset zoom' }).click();
    await page.mouse.dblclick(java.x, java.y);
    // Zoomed to the bar with a 5% margin: it spans nearly the whole width.
    await expect.poll(isJava).toBe(true);
    expect(brightness(await pixel({ x: box.x + 0.06 * box.width, y: java.y + 5 }))).toBeLessThan(150);
    await page.screenshot({ path: join(ARTIFACTS, 'trace-zoomed.png'), fullPage: true });
    await page.getByRole('button', { name: 'Reset zoom' }).click();
    await expect.poll(isJava).toBe(false);
  });

  it('goes back to the request log as it was', async () => {
    await page.getByRole('button', { name: '← Request log' }).click();
    await expect.poll(() => page.locator('section.request-log').isVisible()).toBe(true);
    expect(await page.locator('section.trace-view').count()).toBe(0);
    expect(await page.locator('table.log tbody tr').count()).toBe(25);
    expect(pageErrors).toEqual([]);
  });

  it('says so when the span is gone, and offers the way back', async () => {
    // The file changed under the open log (another tool deleted a span): the row is
    // still listed, its trace cannot be found.
    const row = page.locator('table.log tbody tr').filter({ hasText: '/api/v1/payments' }).first();
    const id = Number(await row.getAttribute('data-span-id'));
    const db = new Database(join(dir, 'capture.sqlite'));
    try {
      expect(db.prepare('DELETE FROM spans WHERE id = ?').run(id).changes).toBe(1);
    } finally {
      db.close();
    }
    await row.locator('td.c-path').click();
    const alert = page.locator('.trace-view [role=alert]');
    await expect
      .poll(() => alert.textContent())
      .toContain(`No trace was found for span #${id}: it is not in this capture file any more.`);
    expect(await alert.textContent()).toContain(`There is no span ${id} in this capture file`);
    await page.screenshot({ path: join(ARTIFACTS, 'trace-not-found.png') });
    await alert.getByRole('button', { name: 'Back to the request log' }).click();
    await expect.poll(() => page.locator('section.request-log').isVisible()).toBe(true);
    // Chromium logs the API's 404 answer itself; nothing else went wrong.
    expect(pageErrors).toEqual(['Failed to load resource: the server responded with a status of 404 (Not Found)']);
  });
});
