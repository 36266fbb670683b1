// Synchronous SQLite access. Only the store worker (and tests) call these directly;
// everything else goes through `Store`, which runs them off the calling thread.

import Database from 'better-sqlite3';
import {
  COUNT_CAP,
  type CaptureInfo,
  type CaptureState,
  type CaptureStats,
  type FlowPage,
  type FlowQuery,
  type RequestPage,
  type RequestQuery,
} from '../api/contract.ts';
import {
  FLOW_FIELDS,
  SPAN_FIELDS,
  type Flow,
  type NetnsRecord,
  type Span,
  type StoredFlow,
  type StoredSpan,
} from '../api/records.ts';
import type { Trace, TraceStart } from '../api/trace.ts';
import { assembleTrace, type AssembleOptions } from '../trace/assemble.ts';
import type { TraceSource } from '../trace/source.ts';
import { migrate, SchemaError } from './schema.ts';

export type Db = Database.Database;

export function openDb(file: string, opts: { readonly?: boolean } = {}): Db {
  let db: Db;
  try {
    db = new Database(file, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
  } catch (err) {
    throw new SchemaError(
      `Cannot open capture file ${file}: ${(err as Error).message}. Check the path and its permissions.`,
    );
  }
  try {
    db.pragma('busy_timeout = 5000');
    if (!opts.readonly) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      // Multi-row INSERTs into an indexed table keep a statement journal; in a temp
      // file that is two pwrite calls per page, a third of the insert cost. In memory
      // it costs a few pages per statement. (test/bench/ingest.ts)
      db.pragma('temp_store = MEMORY');
      db.pragma('foreign_keys = ON');
      migrate(db);
    } else {
      const v = db.pragma('user_version', { simple: true }) as number;
      if (v === 0) throw new SchemaError(`${file} is not a Tapdeck capture file (no schema). Capture into it first.`);
    }
  } catch (err) {
    db.close();
    if (err instanceof SchemaError) throw err;
    throw new SchemaError(`${file} is not a usable capture file: ${(err as Error).message}`);
  }
  return db;
}

export interface NewCapture {
  target: string;
  startedAtUs: number;
}

export function createCapture(db: Db, c: NewCapture): number {
  const r = db
    .prepare(`INSERT INTO captures (target, state, started_at_us) VALUES (?, 'connecting', ?)`)
    .run(c.target, c.startedAtUs);
  return Number(r.lastInsertRowid);
}

export interface CaptureUpdate {
  id: number;
  state?: CaptureState;
  message?: string | null;
  node?: string | null;
  endedAtUs?: number | null;
  collectorVersion?: string;
  kernel?: string;
  arch?: string;
  hello?: unknown;
  stats?: CaptureStats & { raw?: unknown };
}

export function updateCapture(db: Db, u: CaptureUpdate): void {
  const sets: string[] = [];
  const vals: unknown[] = [];
  const put = (col: string, v: unknown): void => {
    sets.push(`${col} = ?`);
    vals.push(v);
  };
  if (u.state !== undefined) put('state', u.state);
  if (u.message !== undefined) put('message', u.message);
  if (u.node !== undefined) put('node', u.node);
  if (u.endedAtUs !== undefined) put('ended_at_us', u.endedAtUs);
  if (u.collectorVersion !== undefined) put('collector_version', u.collectorVersion);
  if (u.kernel !== undefined) put('kernel', u.kernel);
  if (u.arch !== undefined) put('arch', u.arch);
  if (u.hello !== undefined) put('hello', JSON.stringify(u.hello));
  if (u.stats !== undefined) {
    put('events_seen', u.stats.events);
    put('drops', u.stats.drops);
    put('last_stats', JSON.stringify(u.stats));
  }
  if (sets.length === 0) return;
  vals.push(u.id);
  db.prepare(`UPDATE captures SET ${sets.join(', ')} WHERE id = ?`).run(...vals);
}

interface CaptureRow {
  id: number;
  target: string;
  node: string | null;
  state: CaptureState;
  message: string | null;
  started_at_us: number;
  ended_at_us: number | null;
  events_seen: number;
  spans_received: number;
  drops: number;
  last_stats: string | null;
}

function toCaptureInfo(r: CaptureRow): CaptureInfo {
  const last = r.last_stats ? (JSON.parse(r.last_stats) as Partial<CaptureStats>) : {};
  return {
    id: r.id,
    target: r.target,
    node: r.node,
    state: r.state,
    startedAtUs: r.started_at_us,
    endedAtUs: r.ended_at_us,
    message: r.message,
    stats: {
      events: r.events_seen,
      spans: r.spans_received,
      drops: r.drops,
      dropReasons: last.dropReasons ?? {},
      collectorCpuPct: last.collectorCpuPct ?? null,
      collectorRssBytes: last.collectorRssBytes ?? null,
    },
  };
}

export function listCaptures(db: Db): CaptureInfo[] {
  const rows = db.prepare(`SELECT * FROM captures ORDER BY id DESC`).all() as CaptureRow[];
  return rows.map(toCaptureInfo);
}

export function getCapture(db: Db, id: number): CaptureInfo | null {
  const r = db.prepare(`SELECT * FROM captures WHERE id = ?`).get(id) as CaptureRow | undefined;
  return r ? toCaptureInfo(r) : null;
}

/** One traced process (a `process` frame); the columns of the `processes` table. */
export interface ProcessRecord {
  pid: number;
  ppid: number | null;
  process_name: string | null;
  cmdline: string | null;
  exe: string | null;
  netns?: number | null;
  container_id?: string | null;
  /** nginx | openresty | kong | apisix | envoy, or null. */
  gateway?: string | null;
}

export function upsertProcess(db: Db, captureId: number, p: ProcessRecord): void {
  db.prepare(
    `INSERT OR REPLACE INTO processes (capture_id, pid, ppid, process_name, cmdline, exe, netns, container_id, gateway)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(
    captureId,
    p.pid,
    p.ppid,
    p.process_name,
    p.cmdline,
    p.exe,
    p.netns ?? null,
    p.container_id ?? null,
    p.gateway ?? null,
  );
}

/** The processes a capture traced, by pid. */
export function listProcesses(db: Db, captureId: number): (ProcessRecord & { capture_id: number })[] {
  return db
    .prepare(
      `SELECT capture_id, pid, ppid, process_name, cmdline, exe, netns, container_id, gateway
       FROM processes WHERE capture_id = ? ORDER BY pid`,
    )
    .all(captureId) as (ProcessRecord & { capture_id: number })[];
}

const SPAN_WIDTH = SPAN_FIELDS.length;
/** Rows per multi-row INSERT: fewer statement runs, well under SQLite's 32,766 bound parameters. */
const ROWS_PER_INSERT = 16;
const insertSql = (rows: number): string =>
  `INSERT INTO spans (capture_id, ${SPAN_FIELDS.join(', ')}) VALUES ${Array.from(
    { length: rows },
    () => `(?, ${SPAN_FIELDS.map(() => '?').join(', ')})`,
  ).join(', ')}`;

/**
 * Spans as one flat array of column values, SPAN_FIELDS order, `width` values per span:
 * what the store worker binds. Booleans become 0/1, `attributes` its JSON text, a
 * missing field NULL. Cheaper to send between threads than span objects (no keys).
 */
export function spanValues(spans: readonly Span[]): unknown[] {
  const out = new Array<unknown>(spans.length * SPAN_WIDTH);
  let k = 0;
  for (const s of spans) {
    for (let i = 0; i < SPAN_WIDTH; i++) {
      const f = SPAN_FIELDS[i]!;
      const v = s[f];
      out[k++] =
        v === undefined || v === null
          ? null
          : typeof v === 'boolean'
            ? Number(v)
            : f === 'attributes'
              ? JSON.stringify(v)
              : v;
    }
  }
  return out;
}

/**
 * Inserts spans given as one or more `spanValues()` arrays in one transaction and bumps
 * the capture's span count.
 */
export function insertSpanValues(db: Db, captureId: number, parts: readonly (readonly unknown[])[]): void {
  for (const values of parts)
    if (values.length % SPAN_WIDTH !== 0)
      throw new Error(`span values: ${values.length} is not a multiple of ${SPAN_WIDTH}`);
  const many = db.prepare(insertSql(ROWS_PER_INSERT));
  const one = db.prepare(insertSql(1));
  const bump = db.prepare(`UPDATE captures SET spans_received = spans_received + ? WHERE id = ?`);
  const row = SPAN_WIDTH + 1;
  db.transaction(() => {
    const bind = new Array<unknown>(row * ROWS_PER_INSERT);
    const single = new Array<unknown>(row);
    single[0] = captureId;
    let total = 0;
    for (const values of parts) {
      const count = values.length / SPAN_WIDTH;
      total += count;
      let s = 0;
      for (; s + ROWS_PER_INSERT <= count; s += ROWS_PER_INSERT) {
        for (let r = 0; r < ROWS_PER_INSERT; r++) {
          const from = (s + r) * SPAN_WIDTH;
          const to = r * row;
          bind[to] = captureId;
          for (let i = 0; i < SPAN_WIDTH; i++) bind[to + 1 + i] = values[from + i];
        }
        many.run(bind);
      }
      for (; s < count; s++) {
        const from = s * SPAN_WIDTH;
        for (let i = 0; i < SPAN_WIDTH; i++) single[1 + i] = values[from + i];
        one.run(single);
      }
    }
    bump.run(total, captureId);
  })();
}

/** Inserts spans in one transaction and bumps the capture's span count. */
export function insertSpans(db: Db, captureId: number, spans: readonly Span[]): void {
  insertSpanValues(db, captureId, [spanValues(spans)]);
}

/** A fresh row from better-sqlite3 as a span: `attributes` parsed, in place (no copy). */
function rowToSpan(r: Record<string, unknown>): StoredSpan {
  const attrs = r['attributes'];
  r['attributes'] = typeof attrs === 'string' ? (JSON.parse(attrs) as Record<string, unknown>) : null;
  // INTEGER 0/1 in SQLite; a boolean in frames and in --json, as the collector sends it.
  const tls = r['is_tls'];
  r['is_tls'] = typeof tls === 'number' ? tls !== 0 : null;
  return r as unknown as StoredSpan;
}

export const DEFAULT_LIMIT = 200;
export const MAX_LIMIT = 10_000;

/**
 * The WHERE clauses of a filtered query: each entry is a condition with its values,
 * kept only when the filter was given (values not undefined).
 */
function clauses(entries: readonly (readonly [sql: string, values: readonly unknown[] | undefined])[]): {
  where: string[];
  vals: unknown[];
} {
  const where: string[] = [];
  const vals: unknown[] = [];
  for (const [sql, values] of entries) {
    if (values === undefined) continue;
    where.push(sql);
    vals.push(...values);
  }
  return { where, vals };
}

/** `v` (`times` over, for a condition that uses it twice), or undefined when not given. */
const given = <T>(v: T | undefined | null | '', times = 1): T[] | undefined =>
  v === undefined || v === null || v === '' ? undefined : new Array<T>(times).fill(v);
const inList = (col: string, list: readonly string[] | undefined): readonly [string, string[] | undefined] => [
  `${col} IN (${(list ?? []).map(() => '?').join(',')})`,
  list?.length ? [...list] : undefined,
];

/** The request log: spans newest first, filtered. */
export function querySpans(db: Db, q: RequestQuery): RequestPage {
  const { where, vals } = clauses([
    ['capture_id = ?', given(q.captureId)],
    inList('observation_point', q.observationPoints),
    ['request_type = ?', given(q.method?.toUpperCase())],
    ['instr(request_resource, ?) > 0', given(q.path)],
    ['request_domain = ?', given(q.domain)],
    ['response_status = ?', given(q.status)],
    ['response_code >= ?', given(q.minCode)],
    ['response_code <= ?', given(q.maxCode)],
    ['(x_request_id_0 = ? OR x_request_id_1 = ?)', given(q.xRequestId, 2)],
    ['duration_us >= ?', given(q.minDurationUs)],
    ['start_time_us >= ?', given(q.fromUs)],
    ['start_time_us < ?', given(q.toUs)],
  ]);
  const whereSql = where.length ? `WHERE ${where.join(' AND ')}` : '';
  // Counting stops after COUNT_CAP + 1 matches: a full count of 10M rows takes seconds
  // (test/bench/query.ts); "more than 10,000" is what a person reads there anyway.
  const counted = (
    db.prepare(`SELECT count(*) AS n FROM (SELECT 1 FROM spans ${whereSql} LIMIT ?)`).get(...vals, COUNT_CAP + 1) as {
      n: number;
    }
  ).n;
  const totalCapped = counted > COUNT_CAP;
  const total = totalCapped ? COUNT_CAP : counted;
  const pageWhere = [...where];
  const pageVals = [...vals];
  if (q.beforeId !== undefined) {
    pageWhere.push('id < ?');
    pageVals.push(q.beforeId);
  }
  const limit = Math.min(Math.max(1, q.limit ?? DEFAULT_LIMIT), MAX_LIMIT);
  const rows = db
    .prepare(
      `SELECT * FROM spans ${pageWhere.length ? `WHERE ${pageWhere.join(' AND ')}` : ''} ORDER BY start_time_us DESC, id DESC LIMIT ?`,
    )
    .all(...pageVals, limit) as Record<string, unknown>[];
  return totalCapped ? { rows: rows.map(rowToSpan), total, totalCapped } : { rows: rows.map(rowToSpan), total };
}

/** Trace assembly's lookups (main/trace/source.ts), each served by an index (migration 2). */
export function traceSource(db: Db): TraceSource {
  const ids = (where: string) => {
    const stmt = db.prepare(`SELECT id FROM spans WHERE ${where} IN (SELECT value FROM json_each(?)) LIMIT ?`).pluck();
    return (values: readonly (string | number)[], limit: number): number[] =>
      values.length === 0
        ? []
        : (stmt.all(JSON.stringify(values), Math.min(limit, Number.MAX_SAFE_INTEGER)) as number[]);
  };
  const both =
    (f: ReturnType<typeof ids>, g: ReturnType<typeof ids>) =>
    (values: readonly (string | number)[], limit: number): number[] => [
      ...new Set([...f(values, limit), ...g(values, limit)]),
    ];
  const rows = db.prepare(`SELECT * FROM spans WHERE id IN (SELECT value FROM json_each(?))`);
  const first = (where: string) => {
    const stmt = db.prepare(`SELECT id FROM spans WHERE ${where} ORDER BY start_time_us, id LIMIT 1`).pluck();
    return (v: string): number | null => (stmt.get(v) as number | undefined) ?? null;
  };
  const firstX0 = first('x_request_id_0 = ?');
  const firstX1 = first('x_request_id_1 = ?');
  const firstStart = db.prepare(`SELECT id FROM spans WHERE id IN (?, ?) ORDER BY start_time_us, id LIMIT 1`).pluck();
  return {
    firstByXRequestId: (v) => (firstStart.get(firstX0(v) ?? -1, firstX1(v) ?? -1) as number | undefined) ?? null,
    firstByTraceId: first('trace_id = ?'),
    byIds: (list) =>
      list.length === 0 ? [] : (rows.all(JSON.stringify(list)) as Record<string, unknown>[]).map(rowToSpan),
    idsByXRequestIds: both(ids('x_request_id_0'), ids('x_request_id_1')),
    idsByTraceIds: ids('trace_id'),
    idsBySpanIds: ids('span_id'),
    idsByParentSpanIds: ids('parent_span_id'),
    idsBySyscallTraceIds: both(ids('syscall_trace_id_request'), ids('syscall_trace_id_response')),
    idsByReqTcpSeqs: ids('req_tcp_seq'),
  };
}

/** Assembles the trace that `start` names (see main/trace). */
export function assembleTraceFrom(db: Db, start: TraceStart, opts?: AssembleOptions): Trace {
  return assembleTrace(traceSource(db), start, opts);
}

const FLOW_UPDATE_COLS = FLOW_FIELDS.filter((f) => f !== 'flow_id');
const UPSERT_FLOW_SQL =
  `INSERT INTO flows (capture_id, ${FLOW_FIELDS.join(', ')}) VALUES (?, ${FLOW_FIELDS.map(() => '?').join(', ')}) ` +
  `ON CONFLICT (capture_id, flow_id) DO UPDATE SET ${FLOW_UPDATE_COLS.map((c) => `${c} = excluded.${c}`).join(', ')} ` +
  // A late periodic update never reopens a flow that already has its final record.
  `WHERE flows.final = 0`;

/** Inserts or updates flow records (by `flow_id`) in one transaction. */
export function upsertFlows(db: Db, captureId: number, flows: readonly Flow[]): void {
  const stmt = db.prepare(UPSERT_FLOW_SQL);
  db.transaction(() => {
    const vals = new Array<unknown>(FLOW_FIELDS.length + 1);
    vals[0] = captureId;
    for (const f of flows) {
      for (let i = 0; i < FLOW_FIELDS.length; i++) {
        const k = FLOW_FIELDS[i]!;
        const v = f[k];
        vals[i + 1] = v === undefined ? null : typeof v === 'boolean' ? (v ? 1 : 0) : v;
      }
      stmt.run(vals);
    }
  })();
}

export function upsertNetns(db: Db, captureId: number, n: NetnsRecord): void {
  db.prepare(`INSERT OR REPLACE INTO netns (capture_id, netns, names, host, interfaces) VALUES (?, ?, ?, ?, ?)`).run(
    captureId,
    n.netns,
    JSON.stringify(n.names ?? []),
    n.host ? 1 : 0,
    JSON.stringify(n.interfaces ?? []),
  );
}

/** Flows, newest first, filtered. */
export function queryFlows(db: Db, q: FlowQuery): FlowPage {
  const { where, vals } = clauses([
    ['capture_id = ?', given(q.captureId)],
    inList('observation_point', q.observationPoints),
    ['interface = ?', given(q.interface)],
    ['(client_ip = ? OR server_ip = ?)', given(q.ip, 2)],
    ['(client_port = ? OR server_port = ?)', given(q.port, 2)],
    ['close_reason = ?', given(q.closeReason)],
    ['end_time_us >= ?', given(q.fromUs)],
    ['start_time_us < ?', given(q.toUs)],
  ]);
  const whereSql = where.length ? `WHERE ${where.join(' AND ')}` : '';
  const total = (db.prepare(`SELECT count(*) AS n FROM flows ${whereSql}`).get(...vals) as { n: number }).n;
  const limit = Math.min(Math.max(1, q.limit ?? DEFAULT_LIMIT), MAX_LIMIT);
  const rows = db
    .prepare(`SELECT * FROM flows ${whereSql} ORDER BY start_time_us DESC, id DESC LIMIT ?`)
    .all(...vals, limit) as Record<string, unknown>[];
  return { rows: rows.map((r) => ({ ...r, final: r['final'] === 1 }) as StoredFlow), total };
}
