// The renderer's web client (app/src/web-client.ts) against the real web bridge, in
// Node (which has fetch and WebSocket): calls, the core's error sentences, events.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, createWebClient } from '../../../app/src/web-client.ts';
import type { ApiEvents } from '../../../main/api/contract.ts';
import { createCore, type Core } from '../../../main/core/core.ts';
import { startWebServer, type WebServer } from '../../../main/web/server.ts';
import { gatewayTraffic } from './span-fixtures.ts';

let dir: string;
let core: Core;
let server: WebServer;
const T0 = Date.UTC(2025, 0, 31, 14, 3, 7) * 1000;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tapdeck-client-'));
  core = await createCore({ dbPath: join(dir, 'capture.sqlite'), mode: 'web' });
  const id = await core.store.createCapture({ target: 'root@gw-1', startedAtUs: T0 });
  core.store.appendSpans(id, gatewayTraffic(3, T0));
  await core.store.flush();
  server = await startWebServer({ core, host: '127.0.0.1', rendererDir: dir });
});

afterAll(async () => {
  await server?.close();
  await core?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('web client', () => {
  it('has one function per channel of the contract, plus on()', () => {
    const { api } = createWebClient({ origin: `http://127.0.0.1:${server.port}`, token: server.token });
    expect(Object.keys(api).sort()).toEqual(
      [
        'app:info',
        'capture:list',
        'capture:start',
        'capture:stop',
        'flows:query',
        'on',
        'requests:query',
        'trace:get',
      ].sort(),
    );
  });

  it('calls the core and returns its values', async () => {
    const { api } = createWebClient({ origin: `http://127.0.0.1:${server.port}`, token: server.token });
    expect((await api['app:info']()).mode).toBe('web');
    const page = await api['requests:query']({ method: 'POST' });
    expect(page.total).toBe(2);
    expect(page.rows.every((r) => r.request_type === 'POST')).toBe(true);
    expect((await api['capture:list']()).map((c) => c.target)).toEqual(['root@gw-1']);
  });

  it("rethrows the core's error sentence as an ApiError", async () => {
    const { api } = createWebClient({ origin: `http://127.0.0.1:${server.port}`, token: server.token });
    const err = await api['capture:stop']({ id: 42 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).message).toBe('There is no capture 42 in this file.');
  });

  it('says what to do when the token is wrong', async () => {
    const { api } = createWebClient({ origin: `http://127.0.0.1:${server.port}`, token: 'not-the-token-at-all' });
    await expect(api['app:info']()).rejects.toMatchObject({
      status: 401,
      message: expect.stringContaining('tapdeck serve'),
    });
  });

  it('delivers pushed events to on() listeners until unsubscribed', async () => {
    const { api } = createWebClient({ origin: `http://127.0.0.1:${server.port}`, token: server.token });
    const got: ApiEvents['spans:added'][] = [];
    const off = api.on('spans:added', (p) => got.push(p));
    // The socket opens asynchronously; emit until the first event arrives.
    await expect
      .poll(() => {
        core.events.emit('spans:added', { captureId: 1, count: 7 });
        return got.length;
      })
      .toBeGreaterThan(0);
    expect(got[0]).toEqual({ captureId: 1, count: 7 });
    off();
  });
});
