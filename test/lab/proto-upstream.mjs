#!/usr/bin/env node
// Protocol upstreams of the Tapdeck lab, run in the svcb namespace:
//
//   node test/lab/proto-upstream.mjs --grpc 198.18.0.40:50051 --ws 198.18.0.40:8090 \
//     --log STATE/proto.log --pid-file STATE/proto.pid
//
//   gRPC  lab.Echo/Say (test/lab/echo.proto) over cleartext HTTP/2: answers with the
//         request's text, or fails with the status the request's `code` asks for.
//   ws    a WebSocket echo server: every message comes back as it was sent.
//
// One JSON line per gRPC call and per WebSocket connection goes to the log: the
// server's own record that tests compare captures with.

import { createWriteStream, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { WebSocketServer } from 'ws';

const { values: opts } = parseArgs({
  options: {
    grpc: { type: 'string', default: '127.0.0.1:50051' },
    ws: { type: 'string', default: '127.0.0.1:8090' },
    log: { type: 'string', default: '' },
    'pid-file': { type: 'string', default: '' },
  },
  strict: true,
});

const hostPort = (s, flag) => {
  const m = /^(.+):(\d+)$/.exec(s);
  if (!m) {
    console.error(`proto-upstream: --${flag} must be HOST:PORT, got "${s}". Example: 198.18.0.40:50051`);
    process.exit(2);
  }
  return { host: m[1], port: Number(m[2]) };
};
const grpcAt = hostPort(opts.grpc, 'grpc');
const wsAt = hostPort(opts.ws, 'ws');
const log = opts.log ? createWriteStream(opts.log, { flags: 'a' }) : null;
const record = (o) => log?.write(`${JSON.stringify({ time: Date.now() / 1000, ...o })}\n`);

const here = dirname(fileURLToPath(import.meta.url));
const def = protoLoader.loadSync(join(here, 'echo.proto'), { keepCase: true, defaults: true });
const lab = grpc.loadPackageDefinition(def).lab;

const server = new grpc.Server();
server.addService(lab.Echo.service, {
  Say(call, callback) {
    const { text, code } = call.request;
    const rid = call.metadata.get('x-request-id')[0]?.toString() ?? null;
    const c = code >= 1 && code <= 16 ? code : 0;
    record({ kind: 'grpc', method: '/lab.Echo/Say', code: c, text, x_request_id: rid });
    if (c !== 0) callback({ code: c, details: `lab failure ${c}` });
    else callback(null, { text });
  },
});

const wss = new WebSocketServer({ host: wsAt.host, port: wsAt.port });
wss.on('connection', (sock, req) => {
  let messages = 0;
  sock.on('message', (data, binary) => {
    messages += 1;
    sock.send(data, { binary });
  });
  sock.on('close', () => record({ kind: 'ws', path: req.url, messages }));
});

server.bindAsync(`${grpcAt.host}:${grpcAt.port}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) {
    console.error(`proto-upstream: cannot listen on ${opts.grpc}: ${err.message}`);
    process.exit(1);
  }
  if (opts['pid-file']) writeFileSync(opts['pid-file'], `${process.pid}\n`);
  console.error(`proto-upstream: gRPC on ${opts.grpc}, WebSocket echo on ${opts.ws}`);
});

const stop = () => {
  if (opts['pid-file']) rmSync(opts['pid-file'], { force: true });
  wss.close();
  server.forceShutdown();
  log?.end();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
