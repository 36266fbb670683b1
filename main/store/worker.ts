// The store worker: the only thread that touches SQLite. It owns one connection,
// answers requests from `Store`, and batches span inserts into transactions.

import { parentPort, workerData } from 'node:worker_threads';
import { SPAN_FIELDS } from '../api/records.ts';
import * as db from './db.ts';
import type { StoreRequest, StoreResponse } from './protocol.ts';

const port = parentPort;
if (!port) throw new Error('store worker started outside a worker thread');

const { file } = workerData as { file: string };
let conn: db.Db;
try {
  conn = db.openDb(file);
  port.postMessage({ id: 0, ok: true, value: null } satisfies StoreResponse);
} catch (err) {
  port.postMessage({
    id: 0,
    ok: false,
    error: { name: (err as Error).name, message: (err as Error).message },
  } satisfies StoreResponse);
  process.exit(0);
}

const FLUSH_ROWS = 5_000;
const FLUSH_MS = 50;
const pending = new Map<number, unknown[][]>();
let pendingRows = 0;
let timer: NodeJS.Timeout | null = null;

function flush(): void {
  if (timer) {
    clearTimeout(timer);
    timer = null;
  }
  for (const [captureId, parts] of pending) db.insertSpanValues(conn, captureId, parts);
  pending.clear();
  pendingRows = 0;
}

function handle(req: StoreRequest): unknown {
  switch (req.op) {
    case 'appendSpans': {
      const values = JSON.parse(req.values) as unknown[];
      const list = pending.get(req.captureId);
      if (list) list.push(values);
      else pending.set(req.captureId, [values]);
      pendingRows += values.length / SPAN_FIELDS.length;
      if (pendingRows >= FLUSH_ROWS) flush();
      else timer ??= setTimeout(flush, FLUSH_MS);
      return null;
    }
    case 'upsertFlows':
      // After the spans queued before them, so a reader never sees a flow's spans missing.
      flush();
      db.upsertFlows(conn, req.captureId, req.flows);
      return null;
    case 'upsertNetns':
      db.upsertNetns(conn, req.captureId, req.netns);
      return null;
    case 'queryFlows':
      flush();
      return db.queryFlows(conn, req.query);
    case 'flush':
      flush();
      return null;
    case 'createCapture':
      return db.createCapture(conn, req.capture);
    case 'updateCapture':
      flush();
      db.updateCapture(conn, req.update);
      return db.getCapture(conn, req.update.id);
    case 'upsertProcess':
      db.upsertProcess(conn, req.captureId, req.process);
      return null;
    case 'listCaptures':
      flush();
      return db.listCaptures(conn);
    case 'getCapture':
      flush();
      return db.getCapture(conn, req.captureId);
    case 'querySpans':
      flush();
      return db.querySpans(conn, req.query);
    case 'trace':
      flush();
      return db.assembleTraceFrom(conn, req.start);
    case 'close':
      flush();
      conn.close();
      return null;
  }
}

port.on('message', (req: StoreRequest) => {
  try {
    const value = handle(req);
    if (req.id !== undefined) port.postMessage({ id: req.id, ok: true, value } satisfies StoreResponse);
    if (req.op === 'close') port.close();
  } catch (err) {
    const e = err as Error & { code?: unknown; status?: unknown };
    const code = typeof e.code === 'string' ? e.code : undefined;
    const status = typeof e.status === 'number' ? e.status : undefined;
    if (req.id !== undefined)
      port.postMessage({
        id: req.id,
        ok: false,
        error: { name: e.name, message: e.message, code, status },
      } satisfies StoreResponse);
    else console.error(`tapdeck store: ${req.op} failed: ${e.message}`);
  }
});
