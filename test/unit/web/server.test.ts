// The web bridge with a real core on a temporary capture file: the token, the Host and
// Origin checks, the channel allow-list, the body limit, requests:query over HTTP, and
// core events pushed over the WebSocket.

import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { RequestPage } from '../../../main/api/contract.ts';
import type { Trace } from '../../../main/api/trace.ts';
import { createCore, type Core } from '../../../main/core/core.ts';
import { startWebServer, type WebServer } from '../../../main/web/server.ts';
import { gatewayTraffic } from './span-fixtures.ts';

let dir: string;
let core: Core;
let server: WebServer;
let captureId: number;

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A raw HTTP request, so tests control every header (fetch forbids setting Host). */
function http(
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: server.port,
        path,
        method: opts.method ?? 'GET',
        headers: { host: `127.0.0.1:${server.port}`, ...opts.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

function api(channel: string, args: unknown[], headers: Record<string, string> = {}): Promise<Reply> {
  return http(`/api/${channel}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${server.token}`, ...headers },
    body: JSON.stringify(args),
  });
}

const T0 = Date.UTC(2025, 0, 31, 14, 3, 7) * 1000;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tapdeck-web-'));
  const rendererDir = join(dir, 'app');
  mkdirSync(rendererDir);
  writeFileSync(join(rendererDir, 'index.html'), '<!doctype html><title>Tapdeck</title>');
  core = await createCore({ dbPath: join(dir, 'capture.sqlite'), mode: 'web' });
  captureId = await core.store.createCapture({ target: 'root@gw-1', startedAtUs: T0 });
  core.store.appendSpans(captureId, gatewayTraffic(10, T0));
  await core.store.flush();
  server = await startWebServer({ core, host: '127.0.0.1', rendererDir });
});

afterAll(async () => {
  await server?.close();
  await core?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('web bridge', () => {
  it('listens on 127.0.0.1 and prints a URL carrying a 32-byte token', () => {
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/?token=${server.token}`);
    expect(Buffer.from(server.token, 'base64url')).toHaveLength(32);
  });

  it('serves the renderer without the token, with a strict CSP', async () => {
    const res = await http('/');
    expect(res.status).toBe(200);
    expect(res.body).toContain('<title>Tapdeck</title>');
    const csp = String(res.headers['content-security-policy']);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain(`ws://127.0.0.1:${server.port}`);
    expect(csp).not.toContain('unsafe');
  });

  it('does not serve files outside the renderer folder', async () => {
    expect((await http('/../capture.sqlite')).status).toBe(404);
    expect((await http('/%2e%2e/capture.sqlite')).status).toBe(404);
  });

  it('refuses API calls without the token (401)', async () => {
    const res = await http('/api/requests:query', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '[{}]',
    });
    expect(res.status).toBe(401);
    const body = JSON.parse(res.body) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('unauthorized');
    expect(body.error.message).toMatch(/token/);
    expect((await api('requests:query', [{}], { authorization: 'Bearer wrong-token-wrong-token' })).status).toBe(401);
  });

  it('refuses a Host that is not 127.0.0.1:PORT or localhost:PORT (DNS rebinding)', async () => {
    expect((await api('app:info', [], { host: `evil.example:${server.port}` })).status).toBe(403);
    expect((await http('/', { headers: { host: 'evil.example' } })).status).toBe(403);
    expect((await api('app:info', [], { host: `localhost:${server.port}` })).status).toBe(200);
  });

  it('refuses a foreign Origin', async () => {
    expect((await api('app:info', [], { origin: 'http://evil.example' })).status).toBe(403);
    expect((await api('app:info', [], { origin: `http://127.0.0.1:${server.port}` })).status).toBe(200);
  });

  it('answers 404 for a channel that is not in the contract', async () => {
    const res = await api('fs:read', ['/etc/passwd']);
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'unknown_channel' } });
    expect((await api('constructor', [])).status).toBe(404);
  });

  it('refuses bodies over the size limit (413) and bodies that are not an array (400)', async () => {
    const big = await api('requests:query', [{ path: 'x'.repeat(2 * 1024 * 1024) }]);
    expect(big.status).toBe(413);
    expect(JSON.parse(big.body)).toMatchObject({ error: { code: 'too_large' } });
    const notArray = await http('/api/requests:query', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${server.token}` },
      body: '{"limit":1}',
    });
    expect(notArray.status).toBe(400);
  });

  it('answers app:info', async () => {
    const res = await api('app:info', []);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ mode: 'web', dbPath: join(dir, 'capture.sqlite') });
  });

  it('answers requests:query with the spans in the capture file, newest first', async () => {
    const res = await api('requests:query', [{ captureId }]);
    expect(res.status).toBe(200);
    const page = JSON.parse(res.body) as RequestPage;
    expect(page.total).toBe(20);
    expect(page.rows[0]!.start_time_us).toBeGreaterThanOrEqual(page.rows[1]!.start_time_us);
    const failing = JSON.parse(
      (await api('requests:query', [{ captureId, minCode: 500, maxCode: 599 }])).body,
    ) as RequestPage;
    expect(failing.total).toBe(4);
    expect(
      failing.rows.every((r) => r.request_resource === '/api/v1/inventory/sku-1234' && r.response_code === 502),
    ).toBe(true);
    const one = JSON.parse(
      (await api('requests:query', [{ xRequestId: '7f3c2a10-0003-4b8e-9d21-a1b2c3d4e5f6' }])).body,
    ) as RequestPage;
    expect(one.rows.map((r) => r.observation_point).sort()).toEqual(['c-p', 's-p']);
  });

  it('answers trace:get with the assembled tree, 404 not_found when nothing matches', async () => {
    const xrid = '7f3c2a10-0003-4b8e-9d21-a1b2c3d4e5f6';
    const res = await api('trace:get', [{ requestId: xrid }]);
    expect(res.status).toBe(200);
    const t = JSON.parse(res.body) as Trace;
    expect(t.spanCount).toBe(2);
    expect(t.roots).toHaveLength(1);
    expect(t.roots[0]!.span).toMatchObject({ observation_point: 's-p', x_request_id_1: xrid });
    expect(t.roots[0]!.children.map((c) => [c.span.observation_point, c.linkedBy, c.depth])).toEqual([
      ['c-p', 'x_request_id', 1],
    ]);
    const missing = await api('trace:get', [{ requestId: 'no-such-id' }]);
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body)).toMatchObject({
      error: {
        code: 'not_found',
        message: expect.stringMatching(/^No span in this capture file has X-Request-ID "no-such-id"/) as unknown,
      },
    });
    const bad = await api('trace:get', [{ requestId: 'a', spanId: 1 }]);
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body)).toMatchObject({ error: { code: 'bad_request' } });
  });

  it("turns a core error into { error } with the core's sentence", async () => {
    const res = await api('capture:stop', [{ id: 999 }]);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(JSON.parse(res.body)).toMatchObject({ error: { message: 'There is no capture 999 in this file.' } });
  });

  it('pushes core events over the WebSocket, only with the token', async () => {
    const wsUrl = `ws://127.0.0.1:${server.port}/events`;
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(wsUrl);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => undefined);
    });
    expect(refused).toBe(401);

    const foreign = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${wsUrl}?token=${server.token}`, { origin: 'http://evil.example' });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => undefined);
    });
    expect(foreign).toBe(403);

    const ws = new WebSocket(`${wsUrl}?token=${encodeURIComponent(server.token)}`, {
      origin: `http://127.0.0.1:${server.port}`,
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const got = new Promise<unknown>((resolve) =>
      ws.once('message', (data: Buffer) => resolve(JSON.parse(data.toString('utf8')))),
    );
    core.events.emit('spans:added', { captureId, count: 2 });
    expect(await got).toEqual({ event: 'spans:added', payload: { captureId, count: 2 } });
    ws.close();
  });
});

describe('web bridge body limit without Content-Length', () => {
  it('answers 413 to an oversized chunked body', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: server.port,
          path: '/api/requests:query',
          method: 'POST',
          headers: {
            host: `127.0.0.1:${server.port}`,
            'content-type': 'application/json',
            authorization: `Bearer ${server.token}`,
            'transfer-encoding': 'chunked',
          },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      let sent = 0;
      const pump = (): void => {
        while (sent < 4 * 1024 * 1024) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    expect(status).toBe(413);
  });
});
