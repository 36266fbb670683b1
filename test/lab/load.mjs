#!/usr/bin/env node
// Bounded HTTP load for the Tapdeck lab: plain node, no dependencies. Run it inside the
// client namespace:
//
//   ip netns exec tdlab-client node test/lab/load.mjs --count 500 --concurrency 8
//
// Options
//   --url URL              base URL (default http://198.18.0.20, the lab gateway). Only
//                          http:// or https:// to an IPv4 literal in 198.18.0.0/15 or
//                          127.0.0.0/8. https:// accepts the lab's self-signed certificate.
//   --count N              requests to send (default 1000, hard cap 100000)
//   --concurrency C        requests in flight (default 8, cap 256)
//   --keepalive on|off     reuse connections (default on)
//   --mix FILE             JSON array of {method, path, weight?, body?}; "{n}" in a path
//                          or body becomes the request number. Default: the built-in mix.
//   --request-id-fraction F  share of requests sent with X-Request-ID load-<run>-<n>
//                          (default 0.5; exactly floor(count*F) of them)
//   --traceparent-fraction F share of requests sent with a fresh W3C traceparent (default 0)
//   --run ID               run id used in request ids (default: random)
//   --seed S               seed of the mix choice (default 1: the same run every time)
//   --time-limit SECONDS   stop sending and abort what is in flight (default 60, cap 3600)
//   --timeout MS           per-request timeout (default 10000)
//   --out FILE             write every request as JSON: {id, method, path, status,
//                          x_request_id_sent, x_request_id_received, trace_id, ms, error}
//
// Prints one JSON summary on stdout. Exit 0 when the run happened (whatever the
// statuses), 2 on bad options.

import http from 'node:http';
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { parseArgs } from 'node:util';

const MAX_COUNT = 100_000;
const MAX_CONCURRENCY = 256;
const MAX_TIME_LIMIT_S = 3600;

const BUILTIN_MIX = [
  { method: 'GET', path: '/api/items?id={n}', weight: 30 },
  { method: 'POST', path: '/api/items?id={n}', weight: 10, body: '{"id":{n},"name":"item-{n}"}' },
  { method: 'PUT', path: '/api/users/{n}', weight: 8, body: '{"id":{n},"name":"user-{n}"}' },
  { method: 'DELETE', path: '/api/users/{n}', weight: 5 },
  { method: 'GET', path: '/api/users/{n}', weight: 25 },
  { method: 'GET', path: '/slow?ms=300', weight: 4 },
  { method: 'GET', path: '/status/404', weight: 8 },
  { method: 'GET', path: '/bad/{n}', weight: 5 },
];

function fail(message) {
  console.error(`load: ${message}`);
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      url: { type: 'string', default: 'http://198.18.0.20' },
      count: { type: 'string', default: '1000' },
      concurrency: { type: 'string', default: '8' },
      keepalive: { type: 'string', default: 'on' },
      mix: { type: 'string' },
      'request-id-fraction': { type: 'string', default: '0.5' },
      'traceparent-fraction': { type: 'string', default: '0' },
      run: { type: 'string' },
      seed: { type: 'string', default: '1' },
      'time-limit': { type: 'string', default: '60' },
      timeout: { type: 'string', default: '10000' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
} catch (err) {
  fail(`${err.message}. See the option list at the top of test/lab/load.mjs.`);
}
const opts = parsed.values;
if (opts.help) {
  console.log(
    'usage: node test/lab/load.mjs [--url URL] [--count N] [--concurrency C] ' +
      '[--keepalive on|off] [--mix FILE] [--request-id-fraction F] ' +
      '[--traceparent-fraction F] [--run ID] [--seed S] [--time-limit SECONDS] ' +
      '[--timeout MS] [--out FILE]',
  );
  process.exit(0);
}

function intOption(name, min, max) {
  const v = Number(opts[name]);
  if (!Number.isInteger(v) || v < min) fail(`--${name} must be an integer >= ${min}.`);
  if (v > max) fail(`--${name} is capped at ${max}; got ${v}.`);
  return v;
}
function fractionOption(name) {
  const v = Number(opts[name]);
  if (!Number.isFinite(v) || v < 0 || v > 1) fail(`--${name} must be between 0 and 1.`);
  return v;
}

const count = intOption('count', 1, MAX_COUNT);
const concurrency = intOption('concurrency', 1, MAX_CONCURRENCY);
const timeLimitS = Number(opts['time-limit']);
if (!Number.isFinite(timeLimitS) || timeLimitS <= 0 || timeLimitS > MAX_TIME_LIMIT_S) {
  fail(`--time-limit must be a number of seconds in (0, ${MAX_TIME_LIMIT_S}].`);
}
const timeoutMs = intOption('timeout', 1, 600_000);
const ridFraction = fractionOption('request-id-fraction');
const tpFraction = fractionOption('traceparent-fraction');
const seed = intOption('seed', 0, 2 ** 32 - 1);
if (opts.keepalive !== 'on' && opts.keepalive !== 'off') fail('--keepalive must be on or off.');
const keepAlive = opts.keepalive === 'on';
const run = opts.run ?? randomBytes(4).toString('hex');
if (!/^[A-Za-z0-9._-]{1,64}$/.test(run)) fail('--run must be 1-64 of [A-Za-z0-9._-].');

// Only the lab: 198.18.0.0/15 (the namespaces) and 127.0.0.0/8 (loopback).
function allowedHost(host) {
  if (!isIPv4(host)) return false;
  const [a, b] = host.split('.').map(Number);
  return (a === 198 && (b === 18 || b === 19)) || a === 127;
}
let base;
try {
  base = new URL(opts.url);
} catch {
  fail(`--url "${opts.url}" is not a URL.`);
}
if (base.protocol !== 'http:' && base.protocol !== 'https:')
  fail(`--url must be http:// or https://, got ${base.protocol}`);
const tls = base.protocol === 'https:';
const client = tls ? https : http;
if (!allowedHost(base.hostname)) {
  fail(
    `refusing to target ${base.hostname}: only IPv4 addresses in 198.18.0.0/15 ` +
      '(the lab) or 127.0.0.0/8 are allowed.',
  );
}
const basePath = base.pathname.replace(/\/+$/, '');

let mix = BUILTIN_MIX;
if (opts.mix) {
  try {
    mix = JSON.parse(readFileSync(opts.mix, 'utf8'));
  } catch (err) {
    fail(`cannot read the mix file ${opts.mix}: ${err.message}`);
  }
  if (!Array.isArray(mix) || mix.length === 0) fail('the mix file must hold a non-empty array.');
  for (const [i, m] of mix.entries()) {
    if (typeof m?.method !== 'string' || typeof m?.path !== 'string' || !m.path.startsWith('/')) {
      fail(`mix entry ${i} needs a "method" and a "path" starting with "/".`);
    }
    if (m.weight !== undefined && !(Number(m.weight) > 0)) {
      fail(`mix entry ${i} has a weight that is not a positive number.`);
    }
  }
}
const totalWeight = mix.reduce((s, m) => s + Number(m.weight ?? 1), 0);

// mulberry32: a small seeded generator, so a run with the same seed sends the same mix.
let rngState = seed >>> 0;
function random() {
  rngState = (rngState + 0x6d2b79f5) >>> 0;
  let t = rngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
function pick() {
  let r = random() * totalWeight;
  for (const m of mix) {
    r -= Number(m.weight ?? 1);
    if (r < 0) return m;
  }
  return mix[mix.length - 1];
}
// Exactly floor(count * f) requests get the header, spread evenly.
function chosen(n, f) {
  return Math.floor((n + 1) * f) > Math.floor(n * f);
}

// keep-alive off means one connection per request: no agent pool at all (a pooled agent
// reuses a free socket for a queued request even with keepAlive false).
// The lab gateway's certificate is self-signed (test/lab/lab up makes it): accept it.
const agent = keepAlive
  ? new client.Agent({ keepAlive: true, maxSockets: concurrency, keepAliveMsecs: 1000, rejectUnauthorized: false })
  : tls
    ? new https.Agent({ keepAlive: false, maxSockets: Infinity, rejectUnauthorized: false })
    : false;
const started = performance.now();
const deadline = started + timeLimitS * 1000;
const inFlight = new Set();
const records = [];
const statuses = {};
const errorKinds = {};
let next = 0;
let sent = 0;
let stoppedBy = 'count';

function one(n) {
  const m = pick();
  const path = m.path.replaceAll('{n}', String(n));
  const body = m.body === undefined ? null : String(m.body).replaceAll('{n}', String(n));
  const headers = { 'user-agent': 'tapdeck-lab-load/1' };
  if (!keepAlive) headers['connection'] = 'close';
  const rid = chosen(n, ridFraction) ? `load-${run}-${n}` : null;
  if (rid) headers['x-request-id'] = rid;
  let traceId = null;
  if (chosen(n, tpFraction)) {
    traceId = randomBytes(16).toString('hex');
    headers['traceparent'] = `00-${traceId}-${randomBytes(8).toString('hex')}-01`;
  }
  if (body !== null) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = Buffer.byteLength(body);
  }
  const rec = {
    id: n,
    method: m.method,
    path,
    status: null,
    x_request_id_sent: rid,
    x_request_id_received: null,
    trace_id: traceId,
    ms: null,
    error: null,
  };
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = client.request(
      {
        host: base.hostname,
        port: base.port || (tls ? 443 : 80),
        path: basePath + path,
        method: m.method,
        headers,
        agent,
        timeout: timeoutMs,
      },
      (res) => {
        rec.status = res.statusCode;
        const got = res.headers['x-request-id'];
        rec.x_request_id_received = (Array.isArray(got) ? got[0] : got) ?? null;
        res.resume();
        res.on('end', () => finish());
        res.on('error', (err) => finish(err));
      },
    );
    let done = false;
    function finish(err) {
      if (done) return;
      done = true;
      inFlight.delete(req);
      rec.ms = Math.round((performance.now() - t0) * 1000) / 1000;
      if (err) {
        rec.error = err.code ?? err.message;
        errorKinds[rec.error] = (errorKinds[rec.error] ?? 0) + 1;
      } else {
        statuses[rec.status] = (statuses[rec.status] ?? 0) + 1;
      }
      records.push(rec);
      resolve();
    }
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (err) => finish(err));
    inFlight.add(req);
    sent += 1;
    req.end(body ?? undefined);
  });
}

async function worker() {
  while (next < count) {
    if (performance.now() >= deadline) {
      stoppedBy = 'time';
      return;
    }
    const n = next++;
    await one(n);
  }
}

// The time limit is hard: at the deadline, whatever is still in flight is aborted.
const killer = setTimeout(() => {
  stoppedBy = 'time';
  for (const req of inFlight) {
    req.destroy(Object.assign(new Error('time limit'), { code: 'TIME_LIMIT' }));
  }
}, timeLimitS * 1000);

await Promise.all(Array.from({ length: concurrency }, worker));
clearTimeout(killer);
if (agent) agent.destroy();

const elapsedMs = performance.now() - started;
const latencies = records
  .filter((r) => r.status !== null)
  .map((r) => r.ms)
  .sort((a, b) => a - b);
function pct(p) {
  if (latencies.length === 0) return null;
  return latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))];
}
records.sort((a, b) => a.id - b.id);
const errors = records.filter((r) => r.error !== null).length;

const summary = {
  run,
  url: base.origin + basePath,
  keepalive: keepAlive,
  concurrency,
  requested: count,
  sent,
  completed: sent - errors,
  statuses,
  errors,
  error_kinds: errorKinds,
  with_request_id: records.filter((r) => r.x_request_id_sent !== null).length,
  request_id_echoed: records.filter(
    (r) => r.x_request_id_sent !== null && r.x_request_id_received === r.x_request_id_sent,
  ).length,
  request_id_injected: records.filter((r) => r.x_request_id_sent === null && r.x_request_id_received !== null).length,
  with_traceparent: records.filter((r) => r.trace_id !== null).length,
  elapsed_ms: Math.round(elapsedMs),
  rps: Math.round((sent / (elapsedMs / 1000)) * 10) / 10,
  latency_ms: { p50: pct(50), p95: pct(95), p99: pct(99), max: pct(100) },
  stopped_by: stoppedBy,
  out: opts.out ?? null,
};

if (opts.out) writeFileSync(opts.out, JSON.stringify(records) + '\n');
console.log(JSON.stringify(summary, null, 2));
