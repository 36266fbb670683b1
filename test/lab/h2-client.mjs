#!/usr/bin/env node
// A bounded HTTP/2 cleartext client for the Tapdeck lab (prior knowledge, node:http2):
// sends the given paths as concurrent streams on ONE connection and prints a JSON
// summary of what came back.
//
//   node test/lab/h2-client.mjs --url http://198.18.0.20:8081 --concurrency 4 \
//     --header 'x-tag: t1' /api/a /status/404 ...
//
// At most 1000 paths; gives up after --time-limit seconds.

import http2 from 'node:http2';
import { parseArgs } from 'node:util';

const { values: opts, positionals: paths } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://198.18.0.20:8081' },
    concurrency: { type: 'string', default: '4' },
    header: { type: 'string', multiple: true, default: [] },
    method: { type: 'string', default: 'GET' },
    'time-limit': { type: 'string', default: '30' },
  },
  allowPositionals: true,
  strict: true,
});

const concurrency = Number(opts.concurrency);
const limitMs = Number(opts['time-limit']) * 1000;
if (
  paths.length < 1 ||
  paths.length > 1000 ||
  !(concurrency >= 1 && concurrency <= 100) ||
  !(limitMs > 0 && limitMs <= 600_000)
) {
  console.error('h2-client: give 1..1000 paths, --concurrency 1..100 and --time-limit 1..600 seconds.');
  process.exit(2);
}
const extra = {};
for (const h of opts.header) {
  const i = h.indexOf(':');
  if (i < 1) {
    console.error(`h2-client: --header must be "name: value", got "${h}".`);
    process.exit(2);
  }
  extra[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
}

const t0 = Date.now();
const session = http2.connect(opts.url);
session.on('error', (e) => {
  console.error(`h2-client: ${e.message}`);
  process.exit(1);
});
const timer = setTimeout(() => {
  console.error(`h2-client: gave up after ${opts['time-limit']} s`);
  process.exit(1);
}, limitMs);

const results = [];
let next = 0;
async function worker() {
  while (next < paths.length) {
    const path = paths[next++];
    results.push(
      await new Promise((resolve) => {
        const req = session.request({ ':method': opts.method, ':path': path, ...extra });
        let status = 0;
        let xrid = null;
        let bytes = 0;
        req.on('response', (h) => {
          status = h[':status'];
          xrid = h['x-request-id'] ?? null;
        });
        req.on('data', (d) => (bytes += d.length));
        req.on('end', () => resolve({ path, status, x_request_id: xrid, bytes, stream_id: req.id }));
        req.on('error', (e) => resolve({ path, status: 0, error: e.message }));
        req.end();
      }),
    );
  }
}
await Promise.all(Array.from({ length: concurrency }, worker));
clearTimeout(timer);
session.close();
process.stdout.write(`${JSON.stringify({ sent: results.length, results, elapsed_ms: Date.now() - t0 })}\n`);
