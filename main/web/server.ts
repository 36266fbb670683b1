// The web bridge: the typed API of main/api/contract.ts over HTTP and a WebSocket, for
// `tapdeck serve` and for tests driving the renderer in Chromium.
//
//   GET  /, /assets/…   the built renderer (no token needed: it holds no data)
//   POST /api/<channel> body: JSON array of arguments → 200 JSON result,
//                       or 4xx/5xx `{ error: ApiErrorBody }`
//   WS   /events        pushes `{ event, payload }` for every core event
//
// Security (DESIGN.md "Web mode binds 127.0.0.1 only and requires its token"):
// binds 127.0.0.1 only; a random 32-byte token is required on the API
// (`Authorization: Bearer`) and on the WebSocket (`?token=` or the same header); the
// Host header must name 127.0.0.1:PORT or localhost:PORT (DNS rebinding), and a
// browser's Origin must be the app's own; only channels of the contract are served;
// bodies are capped.

import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { isChannel, type ApiErrorBody, type ApiHandlers } from '../api/contract.ts';
import type { EventBus } from '../core/events.ts';
import { rendererCsp } from './csp.ts';
import { BridgeError, httpStatusOf, toErrorBody } from './errors.ts';
import { readStaticFile } from './static-files.ts';

export interface WebServerOptions {
  /** The core to serve: its handlers and its event bus. */
  core: { handlers: ApiHandlers; events: EventBus };
  /** 0 or absent: a free port chosen by the system. */
  port?: number;
  /** Only loopback is allowed; the option exists so callers say it out loud. */
  host?: '127.0.0.1';
  /** The built renderer (dist/app). */
  rendererDir: string;
  /** A fixed token (tests); by default 32 random bytes. */
  token?: string;
  /** Largest accepted request body, in bytes. */
  maxBodyBytes?: number;
}

export interface WebServer {
  /** The page to open, with its token: http://127.0.0.1:PORT/?token=… */
  url: string;
  port: number;
  token: string;
  close(): Promise<void>;
}

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
const HEARTBEAT_MS = 30_000;
/** A client that lets this much pile up unsent is dropped; it reconnects and refetches. */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

export async function startWebServer(opts: WebServerOptions): Promise<WebServer> {
  const host = opts.host ?? '127.0.0.1';
  if (host !== '127.0.0.1') throw new Error('The web bridge only listens on 127.0.0.1.');
  const token = opts.token ?? randomBytes(32).toString('base64url');
  if (token.length < 16) throw new Error('The web bridge token must be at least 16 characters long.');
  const tokenBytes = Buffer.from(token);
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const { handlers, events } = opts.core;

  // Known once listening; the Host/Origin allow-lists depend on it.
  let port = 0;
  const allowedHosts = (): string[] => [`127.0.0.1:${port}`, `localhost:${port}`];
  const allowedOrigins = (): string[] => allowedHosts().map((h) => `http://${h}`);

  const tokenMatches = (given: string | null | undefined): boolean => {
    if (!given) return false;
    const b = Buffer.from(given);
    return b.length === tokenBytes.length && timingSafeEqual(b, tokenBytes);
  };
  const bearerOf = (req: IncomingMessage): string | null => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    return m?.[1] ?? null;
  };
  /** Refuses requests whose Host or (when sent) Origin is not this server's. */
  const checkHostAndOrigin = (req: IncomingMessage): void => {
    if (!allowedHosts().includes((req.headers.host ?? '').toLowerCase())) {
      throw new BridgeError(
        403,
        'bad_host',
        `Tapdeck only answers requests addressed to 127.0.0.1:${port} or localhost:${port}.`,
      );
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !allowedOrigins().includes(origin.toLowerCase())) {
      throw new BridgeError(403, 'bad_origin', 'Tapdeck refuses requests from other web pages.');
    }
  };
  const unauthorized = (): BridgeError =>
    new BridgeError(
      401,
      'unauthorized',
      "This request lacks Tapdeck's token: open the URL printed by `tapdeck serve`, including its ?token=… part.",
    );

  const csp = (): string => rendererCsp({ connect: allowedHosts().map((h) => `ws://${h}`) });

  const baseHeaders = (res: ServerResponse): void => {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    res.setHeader('Content-Security-Policy', csp());
  };

  const sendJson = (res: ServerResponse, status: number, value: unknown): void => {
    const body = JSON.stringify(value === undefined ? null : value);
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(body);
  };
  const sendError = (res: ServerResponse, err: unknown): void => {
    const error: ApiErrorBody = toErrorBody(err);
    const status = httpStatusOf(err);
    // An unread request body cannot be skipped on a kept-alive connection.
    if (status === 413) res.setHeader('Connection', 'close');
    sendJson(res, status, { error });
  };

  const readBody = (req: IncomingMessage): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const declared = Number(req.headers['content-length'] ?? NaN);
      if (declared > maxBody) {
        reject(new BridgeError(413, 'too_large', `Request bodies are limited to ${maxBody} bytes.`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBody) {
          // Stop reading; the 413 goes out with Connection: close.
          req.removeAllListeners('data');
          req.pause();
          reject(new BridgeError(413, 'too_large', `Request bodies are limited to ${maxBody} bytes.`));
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });

  const handleApi = async (req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> => {
    if (!tokenMatches(bearerOf(req))) throw unauthorized();
    let channel: string;
    try {
      channel = decodeURIComponent(pathname.slice('/api/'.length));
    } catch {
      channel = '';
    }
    if (!isChannel(channel))
      throw new BridgeError(404, 'unknown_channel', `Tapdeck has no API call named "${channel}".`);
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      throw new BridgeError(405, 'method_not_allowed', 'API calls are POST requests.');
    }
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json')
      throw new BridgeError(415, 'bad_content_type', 'API calls send a JSON array (Content-Type: application/json).');
    const raw = await readBody(req);
    let args: unknown;
    try {
      args = raw.length === 0 ? [] : (JSON.parse(raw.toString('utf8')) as unknown);
    } catch {
      throw new BridgeError(400, 'bad_json', 'The request body is not valid JSON.');
    }
    if (!Array.isArray(args)) {
      throw new BridgeError(400, 'bad_arguments', "The request body must be a JSON array of the call's arguments.");
    }
    const handler = handlers[channel] as (...a: unknown[]) => Promise<unknown>;
    let result: unknown;
    try {
      result = await handler(...(args as unknown[]));
    } catch (err) {
      sendError(res, err);
      return;
    }
    sendJson(res, 200, result);
  };

  const handleStatic = async (req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      throw new BridgeError(405, 'method_not_allowed', 'Only GET and HEAD are served here.');
    }
    const file = await readStaticFile(opts.rendererDir, pathname);
    if (!file) {
      if (pathname === '/' || pathname === '/index.html') {
        throw new BridgeError(
          503,
          'not_built',
          'The renderer is not built: run `npm run build`, then start `tapdeck serve` again.',
        );
      }
      throw new BridgeError(404, 'not_found', 'Not found.');
    }
    res.writeHead(200, {
      'Content-Type': file.contentType,
      'Content-Length': file.body.length,
      'Cache-Control': file.isIndex ? 'no-store' : 'no-cache',
    });
    res.end(req.method === 'HEAD' ? undefined : file.body);
  };

  const server = createServer((req, res) => {
    baseHeaders(res);
    void (async () => {
      try {
        checkHostAndOrigin(req);
        const pathname = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
        if (pathname === '/api' || pathname.startsWith('/api/')) await handleApi(req, res, pathname);
        else await handleStatic(req, res, pathname);
      } catch (err) {
        if (!res.headersSent) sendError(res, err);
        else res.destroy();
      }
    })();
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 60_000;

  // ---- WebSocket /events ----
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024, perMessageDeflate: false });
  const alive = new WeakMap<WebSocket, boolean>();

  const refuseUpgrade = (socket: Duplex, status: number, message: string): void => {
    const reason = { 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found' }[status] ?? 'Bad Request';
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(message)}\r\n\r\n${message}`,
    );
  };

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    try {
      checkHostAndOrigin(req);
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      if (url.pathname !== '/events') throw new BridgeError(404, 'not_found', 'Not found.');
      if (!tokenMatches(url.searchParams.get('token') ?? bearerOf(req))) throw unauthorized();
    } catch (err) {
      refuseUpgrade(socket, httpStatusOf(err), toErrorBody(err).message);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      alive.set(ws, true);
      ws.on('pong', () => alive.set(ws, true));
      ws.on('error', () => ws.terminate());
      // The channel is one-way; whatever a client sends is ignored.
      wss.emit('connection', ws, req);
    });
  });

  const offEvents = events.onAny((event, payload) => {
    if (wss.clients.size === 0) return;
    const msg = JSON.stringify({ event, payload });
    for (const ws of wss.clients) {
      if (ws.readyState !== WebSocket.OPEN) continue;
      if (ws.bufferedAmount > MAX_BUFFERED_BYTES) ws.terminate();
      else ws.send(msg);
    }
  });

  const heartbeat = setInterval(() => {
    for (const ws of wss.clients) {
      if (alive.get(ws) === false) {
        ws.terminate();
        continue;
      }
      alive.set(ws, false);
      ws.ping();
    }
  }, HEARTBEAT_MS);
  heartbeat.unref();

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      clearInterval(heartbeat);
      offEvents();
      if (err.code === 'EADDRINUSE') {
        reject(
          new Error(
            `Port ${opts.port} on 127.0.0.1 is already in use: choose another with --port, or leave it out to get a free one.`,
          ),
        );
      } else if (err.code === 'EACCES') {
        reject(new Error(`Tapdeck may not listen on port ${opts.port}: choose a port above 1024 with --port.`));
      } else reject(err);
    };
    server.once('error', onError);
    server.listen({ host, port: opts.port ?? 0, exclusive: true }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('The web bridge did not get a TCP port.');
  port = address.port;

  let closing: Promise<void> | null = null;
  return {
    url: `http://127.0.0.1:${port}/?token=${encodeURIComponent(token)}`,
    port,
    token,
    close() {
      closing ??= (async () => {
        clearInterval(heartbeat);
        offEvents();
        // Say goodbye (1001 Going Away), give clients a moment to answer, then cut.
        const goodbyes = [...wss.clients].map(
          (ws) =>
            new Promise<void>((resolve) => {
              ws.once('close', () => resolve());
              ws.close(1001, 'Tapdeck is shutting down');
            }),
        );
        await Promise.race([Promise.all(goodbyes), new Promise((r) => setTimeout(r, 500).unref())]);
        for (const ws of wss.clients) ws.terminate();
        await new Promise<void>((resolve) => wss.close(() => resolve()));
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      })();
      return closing;
    },
  };
}
