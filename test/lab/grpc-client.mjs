#!/usr/bin/env node
// A bounded gRPC client for the Tapdeck lab: calls lab.Echo/Say (test/lab/echo.proto)
// on one HTTP/2 connection and prints a JSON summary of what it saw.
//
//   node test/lab/grpc-client.mjs --target 198.18.0.20:8081 --count 20 --fail-codes 5,14 \
//     --request-id-prefix run1
//
// Call i (0-based) asks for status fail_codes[i % (len+1) - 1], i.e. the calls cycle
// through OK and each listed code. Each call carries x-request-id PREFIX-i. Stops after
// --count calls or --time-limit seconds, whichever comes first.

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const { values: opts } = parseArgs({
  options: {
    target: { type: 'string', default: '198.18.0.20:8081' },
    count: { type: 'string', default: '10' },
    'fail-codes': { type: 'string', default: '' },
    'request-id-prefix': { type: 'string', default: 'grpc' },
    'time-limit': { type: 'string', default: '30' },
  },
  strict: true,
});

const count = Number(opts.count);
const limitMs = Number(opts['time-limit']) * 1000;
if (!Number.isInteger(count) || count < 1 || count > 100_000 || !(limitMs > 0 && limitMs <= 600_000)) {
  console.error('grpc-client: --count must be 1..100000 and --time-limit 1..600 seconds.');
  process.exit(2);
}
const failCodes = opts['fail-codes'] ? opts['fail-codes'].split(',').map(Number) : [];

const here = dirname(fileURLToPath(import.meta.url));
const def = protoLoader.loadSync(join(here, 'echo.proto'), { keepCase: true, defaults: true });
const lab = grpc.loadPackageDefinition(def).lab;
const client = new lab.Echo(opts.target, grpc.credentials.createInsecure());

const t0 = Date.now();
const codes = {};
const calls = [];
for (let i = 0; i < count && Date.now() - t0 < limitMs; i++) {
  const k = i % (failCodes.length + 1);
  const want = k === 0 ? 0 : failCodes[k - 1];
  const md = new grpc.Metadata();
  const rid = `${opts['request-id-prefix']}-${i}`;
  md.set('x-request-id', rid);
  const code = await new Promise((resolve) => {
    client.Say({ text: `hello ${i}`, code: want }, md, { deadline: Date.now() + 10_000 }, (err) =>
      resolve(err ? err.code : 0),
    );
  });
  codes[code] = (codes[code] ?? 0) + 1;
  calls.push({ x_request_id: rid, asked: want, code });
}
client.close();
process.stdout.write(`${JSON.stringify({ sent: calls.length, codes, calls, elapsed_ms: Date.now() - t0 })}\n`);
