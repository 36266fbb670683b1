#!/usr/bin/env node
// An upstream service of the Tapdeck lab: plain node:http, no dependencies.
//
//   node test/lab/upstream.mjs --name svca --listen 198.18.0.30:8080 \
//     --log STATE/svca.log --pid-file STATE/svca.pid --next http://198.18.0.40:8080
//
// Every option can also come from the environment: LAB_SVC_NAME, LAB_SVC_LISTEN,
// LAB_SVC_LOG, LAB_SVC_PID_FILE, LAB_SVC_NEXT.
//
// Routes
//   /api/...        200, JSON echo of method, path, query and the X-Request-ID received
//   /slow?ms=N      waits N ms (capped at 5000), then 200
//   /status/NNN     responds with status NNN (200..599)
//   /chain/...      calls NEXT's /api/... forwarding X-Request-ID and traceparent,
//                   then 200 with NEXT's answer (404 when this service has no --next)
// Every response echoes the request's X-Request-ID as a response header. One JSON line
// per request goes to the log file: time, service, method, url, status, x_request_id.

import http from 'node:http';
import { createWriteStream, writeFileSync, rmSync } from 'node:fs';
import { parseArgs } from 'node:util';

// OpenTelemetry: a later issue instruments svca with the OpenTelemetry SDK. Do not
// import the SDK here: the lab script starts svca with SVCA_NODE_FLAGS (see
// test/lab/lab), so the SDK is loaded by `node --import <otel-setup.mjs>` before this
// file runs, and its http instrumentation wraps the server below and the /chain/ call
// to the next service. The spots where spans matter are marked "OTel:".

const { values: opts } = parseArgs({
  options: {
    name: { type: 'string', default: process.env.LAB_SVC_NAME ?? 'svc' },
    listen: {
      type: 'string',
      default: process.env.LAB_SVC_LISTEN ?? '127.0.0.1:8080',
    },
    log: { type: 'string', default: process.env.LAB_SVC_LOG ?? '' },
    'pid-file': { type: 'string', default: process.env.LAB_SVC_PID_FILE ?? '' },
    next: { type: 'string', default: process.env.LAB_SVC_NEXT ?? '' },
  },
  strict: true,
});

const SLOW_CAP_MS = 5000;
const BODY_CAP_BYTES = 1 << 20;
const CHAIN_TIMEOUT_MS = 10_000;

const listenMatch = /^(.+):(\d+)$/.exec(opts.listen);
if (!listenMatch) {
  console.error(`upstream: --listen must be HOST:PORT, got "${opts.listen}". Example: 198.18.0.30:8080`);
  process.exit(2);
}
const listenHost = listenMatch[1];
const listenPort = Number(listenMatch[2]);

let nextUrl = null;
if (opts.next) {
  nextUrl = new URL(opts.next);
  if (nextUrl.protocol !== 'http:') {
    console.error(`upstream: --next must be an http:// URL, got "${opts.next}".`);
    process.exit(2);
  }
}

const log = opts.log ? createWriteStream(opts.log, { flags: 'a' }) : null;

// One pool to the next service, like a real service's HTTP client.
const nextAgent = new http.Agent({ keepAlive: true, maxSockets: 32 });

function headerValue(req, name) {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= BODY_CAP_BYTES) chunks.push(chunk);
    });
    req.on('end', () => resolve({ size, text: Buffer.concat(chunks).toString('utf8') }));
    req.on('error', reject);
  });
}

// OTel: the outgoing call of the /chain/ route; the SDK's http instrumentation makes it
// a client span (c-app) and injects its own traceparent when it is loaded.
function callNext(path, req) {
  return new Promise((resolve, reject) => {
    const headers = { accept: 'application/json' };
    const rid = headerValue(req, 'x-request-id');
    const tp = headerValue(req, 'traceparent');
    const ts = headerValue(req, 'tracestate');
    if (rid) headers['x-request-id'] = rid;
    if (tp) headers['traceparent'] = tp;
    if (ts) headers['tracestate'] = ts;
    const out = http.request(
      {
        host: nextUrl.hostname,
        port: nextUrl.port || 80,
        path,
        method: 'GET',
        headers,
        agent: nextAgent,
        timeout: CHAIN_TIMEOUT_MS,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body;
          try {
            body = JSON.parse(text);
          } catch {
            body = text;
          }
          resolve({
            status: res.statusCode,
            x_request_id: res.headers['x-request-id'] ?? null,
            body,
          });
        });
        res.on('error', reject);
      },
    );
    out.on('timeout', () => out.destroy(new Error(`no answer within ${CHAIN_TIMEOUT_MS} ms`)));
    out.on('error', reject);
    out.end();
  });
}

// OTel: the server side of every request (s-app span once the SDK is loaded).
async function handle(req, res) {
  const url = new URL(req.url ?? '/', 'http://upstream.invalid');
  const path = url.pathname;
  const query = Object.fromEntries(url.searchParams);
  const rid = headerValue(req, 'x-request-id') ?? null;
  const body = await readBody(req);

  const echo = {
    service: opts.name,
    method: req.method,
    path,
    query,
    x_request_id: rid,
    traceparent: headerValue(req, 'traceparent') ?? null,
    body_bytes: body.size,
  };

  if (path === '/api' || path.startsWith('/api/')) {
    return sendJson(res, 200, echo);
  }

  if (path === '/slow') {
    const asked = Number(url.searchParams.get('ms') ?? '0');
    const ms = Number.isFinite(asked) ? Math.min(Math.max(asked, 0), SLOW_CAP_MS) : 0;
    await new Promise((r) => setTimeout(r, ms));
    return sendJson(res, 200, { ...echo, waited_ms: ms });
  }

  const statusMatch = /^\/status\/(\d{3})$/.exec(path);
  if (statusMatch) {
    const code = Number(statusMatch[1]);
    if (code < 200 || code > 599) {
      return sendJson(res, 400, { ...echo, error: 'status must be between 200 and 599' });
    }
    if (code === 204 || code === 304) {
      res.writeHead(code);
      return res.end();
    }
    return sendJson(res, code, { ...echo, status: code });
  }

  if (path === '/chain' || path.startsWith('/chain/')) {
    if (!nextUrl) {
      return sendJson(res, 404, { ...echo, error: `${opts.name} has no next service` });
    }
    const nextPath = '/api' + path.slice('/chain'.length) + url.search;
    try {
      const answer = await callNext(nextPath, req);
      return sendJson(res, 200, {
        ...echo,
        next: { url: nextUrl.origin + nextPath, ...answer },
      });
    } catch (err) {
      return sendJson(res, 502, {
        ...echo,
        error: `calling ${nextUrl.origin}${nextPath} failed: ${err.message}`,
      });
    }
  }

  return sendJson(res, 404, { ...echo, error: 'no such route' });
}

const server = http.createServer((req, res) => {
  const started = process.hrtime.bigint();
  const rid = headerValue(req, 'x-request-id');
  if (rid) res.setHeader('x-request-id', rid);
  res.on('finish', () => {
    if (!log) return;
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const line = {
      time: new Date().toISOString(),
      service: opts.name,
      method: req.method,
      url: req.url,
      status: res.statusCode,
      x_request_id: rid ?? null,
      traceparent: headerValue(req, 'traceparent') ?? null,
      ms: Math.round(ms * 1000) / 1000,
      remote: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
    };
    log.write(JSON.stringify(line) + '\n');
  });
  handle(req, res).catch((err) => {
    if (!res.headersSent) sendJson(res, 500, { service: opts.name, error: err.message });
    else res.destroy(err);
  });
});

// The gateway keeps idle upstream connections for 60 s (nginx's keepalive_timeout in
// an upstream block): stay open longer, or nginx reuses a socket we are closing (502).
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

function shutdown() {
  server.close();
  server.closeAllConnections();
  nextAgent.destroy();
  if (opts['pid-file']) rmSync(opts['pid-file'], { force: true });
  if (log) log.end(() => process.exit(0));
  else process.exit(0);
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

server.on('error', (err) => {
  console.error(`upstream ${opts.name}: cannot listen on ${opts.listen}: ${err.message}`);
  process.exit(1);
});

server.listen(listenPort, listenHost, () => {
  if (opts['pid-file']) writeFileSync(opts['pid-file'], `${process.pid}\n`);
  console.error(`upstream ${opts.name}: listening on ${opts.listen}` + (nextUrl ? `, next ${nextUrl.origin}` : ''));
});
