// The renderer in Debian's Chromium, against the web bridge and a real core on a
// temporary capture file: the request log shows the captured spans, filters them, and
// fills live when the core reports new spans, without a reload.
//
// Needs the built renderer: `npx vite build` (or `npm run build`) first.

import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCore, type Core } from '../../main/core/core.ts';
import { APP_ROOT, RENDERER_DIR } from '../../main/paths.ts';
import { startWebServer, type WebServer } from '../../main/web/server.ts';
import { launchChromium } from '../support/browser.ts';
import { gatewayTraffic, makeSpan } from '../unit/web/span-fixtures.ts';

const ARTIFACTS = join(APP_ROOT, 'test', 'artifacts');

let dir: string;
let core: Core;
let server: WebServer;
let context: BrowserContext;
let page: Page;
let captureId: number;
const pageErrors: string[] = [];

// Timestamps in the recent past so times read like a live capture.
const T0 = (Date.now() - 5 * 60_000) * 1000;

beforeAll(async () => {
  if (!existsSync(join(RENDERER_DIR, 'index.html'))) {
    throw new Error(`The renderer is not built (${RENDERER_DIR} has no index.html): run \`npx vite build\` first.`);
  }
  dir = mkdtempSync(join(tmpdir(), 'tapdeck-browser-'));
  core = await createCore({ dbPath: join(dir, 'capture.sqlite'), mode: 'web' });
  captureId = await core.store.createCapture({ target: 'root@gw-1:22', startedAtUs: T0 });
  core.store.appendSpans(captureId, gatewayTraffic(25, T0));
  await core.store.flush();
  const info = await core.store.updateCapture({
    id: captureId,
    state: 'running',
    node: 'gw-1',
    stats: {
      events: 61_204,
      spans: 50,
      drops: 0,
      dropReasons: {},
      collectorCpuPct: 1.8,
      collectorRssBytes: 23_592_960,
    },
  });
  core.events.emit('capture:updated', info);
  server = await startWebServer({ core, host: '127.0.0.1', rendererDir: RENDERER_DIR });

  context = await launchChromium(dir);
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(m.text());
  });
});

afterAll(async () => {
  await context?.close();
  await server?.close();
  await core?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const rows = () => page.locator('table.log tbody tr');
const count = () => page.getByTestId('request-count');
/** The total the log reports: "1,234 requests" → 1234. */
const total = async (): Promise<number | null> => {
  const m = /^([\d,]+) requests?/.exec((await count().textContent()) ?? '');
  return m ? Number(m[1]!.replace(/,/g, '')) : null;
};
/** The distinct texts of one column of the table, sorted. */
const distinct = async (cell: string): Promise<string[]> =>
  [...new Set(await rows().locator(cell).allTextContents())].sort();

describe('request log in the browser (web mode)', () => {
  it('shows the captured requests, newest first, with their details', async () => {
    await page.goto(server.url);
    await expect.poll(total).toBe(50);
    expect(await rows().count()).toBe(50);

    // The token leaves the address bar once read.
    expect(page.url()).toBe(`http://127.0.0.1:${server.port}/`);

    const failing = rows().filter({ hasText: '/api/v1/inventory/sku-1234' }).first();
    await expect.poll(() => failing.locator('td.c-status').textContent()).toBe('502');
    expect(await failing.locator('td.c-status').getAttribute('class')).toContain('status-server_error');
    expect(await failing.locator('td.c-method').textContent()).toBe('GET');

    // Newest first: the last exchange (i = 24, a POST /api/v1/payments) is on top.
    const top = rows().first();
    expect(await top.locator('td.c-path').textContent()).toBe('/api/v1/payments');
    expect(await top.locator('td.c-xrid').textContent()).toBe('7f3c2a10-0024-4b8e-9d21-a1b2c3d4e5f6');
    expect(await top.locator('td.c-op').textContent()).toBe('c-p');
    expect(await page.getByText('7f3c2a10-0007-4b8e-9d21-a1b2c3d4e5f6').count()).toBe(2);

    // Status line from capture:updated.
    expect(await page.getByTestId('capture-state').textContent()).toBe('running');
    const status = await page.locator('.status-line').textContent();
    expect(status).toContain('root@gw-1:22');
    expect(status).toContain('61,204');
    expect(status).toContain('1.8%');
  });

  it('filters by status class, path, method and X-Request-ID', async () => {
    await page.getByLabel('Status', { exact: true }).selectOption('5xx');
    await expect.poll(() => distinct('td.c-status')).toEqual(['502']);
    expect(await total()).toBe(10);
    expect(await rows().count()).toBe(10);

    await page.getByLabel('Status', { exact: true }).selectOption('');
    await page.getByLabel('Path contains').fill('/users/');
    await page.getByLabel('Method').selectOption('GET');
    await expect.poll(() => distinct('td.c-path')).toEqual(['/api/v1/users/42']);
    expect(await total()).toBe(10);
    expect(await distinct('td.c-status')).toEqual(['404']);

    await page.getByRole('button', { name: 'Clear' }).click();
    await expect.poll(total).toBe(50);

    // Clicking an X-Request-ID shows that exchange only: its s-p and c-p spans.
    await page.getByRole('button', { name: '7f3c2a10-0013-4b8e-9d21-a1b2c3d4e5f6' }).first().click();
    await expect.poll(total).toBe(2);
    expect((await rows().locator('td.c-op').allTextContents()).sort()).toEqual(['c-p', 's-p']);
    await page.getByRole('button', { name: 'Clear' }).click();
    await expect.poll(total).toBe(50);
  });

  it('fills live as the core reports new spans, without a reload', async () => {
    await page.evaluate(() => {
      (window as unknown as { __sameDocument: boolean }).__sameDocument = true;
    });
    const now = Date.now() * 1000;
    const fresh = [
      makeSpan({
        op: 's-p',
        method: 'POST',
        path: '/api/v2/checkout',
        code: 502,
        xrid: 'c0ffee00-live-4000-8000-000000000001',
        startUs: now,
        durationUs: 30_112,
      }),
      makeSpan({
        op: 'c-p',
        method: 'POST',
        path: '/api/v2/checkout',
        code: 502,
        xrid: 'c0ffee00-live-4000-8000-000000000001',
        startUs: now + 350,
        durationUs: 29_400,
      }),
      makeSpan({
        op: 's-p',
        method: 'GET',
        path: '/api/v2/cart',
        code: 200,
        xrid: 'c0ffee00-live-4000-8000-000000000002',
        startUs: now + 900,
        durationUs: 4_250,
      }),
    ];
    core.store.appendSpans(captureId, fresh);
    await core.store.flush();
    core.events.emit('spans:added', { captureId, count: fresh.length });

    await expect.poll(total).toBe(53);
    expect(await rows().count()).toBe(53);
    expect(await rows().first().locator('td.c-path').textContent()).toBe('/api/v2/cart');
    const checkout = rows().filter({ hasText: '/api/v2/checkout' });
    expect(await checkout.count()).toBe(2);
    expect(await checkout.first().locator('td.c-status').textContent()).toBe('502');
    expect(await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument)).toBe(true);

    // A live update respects the active filter.
    await page.getByLabel('Status', { exact: true }).selectOption('5xx');
    await expect.poll(total).toBe(12);
    core.store.appendSpans(captureId, [
      makeSpan({
        op: 's-p',
        method: 'GET',
        path: '/api/v2/cart',
        code: 503,
        xrid: 'c0ffee00-live-4000-8000-000000000003',
        startUs: now + 2_000,
        durationUs: 1_000,
      }),
      makeSpan({
        op: 's-p',
        method: 'GET',
        path: '/api/v2/cart',
        code: 200,
        xrid: 'c0ffee00-live-4000-8000-000000000004',
        startUs: now + 3_000,
        durationUs: 1_000,
      }),
    ]);
    await core.store.flush();
    core.events.emit('spans:added', { captureId, count: 2 });
    await expect.poll(total).toBe(13);
    expect(await rows().first().locator('td.c-status').textContent()).toBe('503');
    await page.getByLabel('Status', { exact: true }).selectOption('');
    await expect.poll(total).toBe(55);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'request-log.png') });
    expect(pageErrors).toEqual([]);
  });

  it("shows the core's sentence when a capture cannot start", async () => {
    // Mark the seeded capture finished so the form offers Start.
    core.events.emit(
      'capture:updated',
      await core.store.updateCapture({
        id: captureId,
        state: 'done',
        endedAtUs: Date.now() * 1000,
        message: 'Stopped by the user.',
      }),
    );
    await expect.poll(() => page.getByTestId('capture-state').textContent()).toBe('done');

    const start = page.getByRole('button', { name: 'Start' });
    await start.click();
    await expect
      .poll(() => page.locator('.capture-form [role=alert]').textContent())
      .toBe('Enter the node to capture, as [user@]host[:port].');

    // An OTLP receiver address the collector could not bind: said in the form, before any connection.
    await page.getByLabel('Target').fill('nobody@127.0.0.1:1');
    await page.getByLabel('OTLP receiver').fill('localhost:4318');
    await start.click();
    await expect
      .poll(() => page.locator('.capture-form [role=alert]').textContent())
      .toBe('"localhost:4318" is not an OTLP receiver address: write IP:PORT (e.g. 0.0.0.0:4318) or off.');
    await page.getByLabel('OTLP receiver').fill('');

    // An identity file that does not exist: the core refuses before any connection
    // (only 127.0.0.1 would be contacted anyway) and says which file, in one sentence.
    const identity = join(dir, 'id_ed25519');
    await page.getByLabel('Target').fill('nobody@127.0.0.1:1');
    await page.getByLabel('Identity file').fill(identity);
    await page.getByLabel('known_hosts').fill(join(dir, 'known_hosts'));
    await page.getByLabel('Duration').fill('10s');
    await start.click();
    const alerts = page.locator('[role=alert]');
    await expect.poll(() => alerts.allTextContents(), { timeout: 30_000 }).toEqual([expect.stringContaining(identity)]);
    expect((await alerts.first().textContent())!.trim()).toMatch(/\.$/);
    // The form is usable again for a corrected attempt.
    expect(await page.getByRole('button', { name: 'Start' }).isEnabled()).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, 'capture-error.png') });
  });
});
