import Database from 'better-sqlite3';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Span } from '../../../main/api/records.ts';
import { insertSpans, openDb, querySpans, createCapture } from '../../../main/store/db.ts';
import { migrate, MIGRATIONS, SCHEMA_VERSION, type Migration } from '../../../main/store/schema.ts';
import { Store } from '../../../main/store/store.ts';

const dir = mkdtempSync(join(tmpdir(), 'td-store-'));
let n = 0;
const file = () => join(dir, `c${n++}.sqlite`);

export function span(over: Partial<Span> = {}): Span {
  return {
    signal_source: 'ebpf',
    observation_point: 's-p',
    start_time_us: 1_700_000_000_000_000,
    end_time_us: 1_700_000_000_005_000,
    duration_us: 5000,
    node: 'gw1',
    pid: 10,
    tid: 10,
    process_name: 'nginx',
    container_id: null,
    netns: null,
    interface: null,
    client_ip: '198.18.0.10',
    client_port: 40000,
    server_ip: '198.18.0.20',
    server_port: 80,
    l4_protocol: 'TCP',
    l7_protocol: 'HTTP',
    version: '1.1',
    request_type: 'GET',
    request_domain: 'gw',
    request_resource: '/api/items?id=1',
    endpoint: '/api/items',
    response_code: 200,
    response_status: 'ok',
    response_exception: null,
    request_length: 100,
    response_length: 200,
    x_request_id_0: 'r-1',
    x_request_id_1: 'r-1',
    trace_id: null,
    span_id: null,
    parent_span_id: null,
    syscall_trace_id_request: 1,
    syscall_trace_id_response: 2,
    req_tcp_seq: 1,
    resp_tcp_seq: 2,
    app_service: null,
    app_instance: null,
    attributes: null,
    ...over,
  };
}

const open: Database.Database[] = [];
afterEach(() => open.splice(0).forEach((d) => d.close()));

describe('schema migrations', () => {
  it('creates a new file at the latest version, in WAL mode', () => {
    const db = openDb(file());
    open.push(db);
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    const cols = (db.prepare(`PRAGMA table_info(spans)`).all() as { name: string }[]).map((c) => c.name);
    expect(cols).toContain('x_request_id_0');
    expect(cols).toContain('syscall_trace_id_response');
  });

  it('applies only the missing migrations, each once, and keeps data', () => {
    const f = file();
    const db = new Database(f);
    open.push(db);
    expect(migrate(db, MIGRATIONS.slice(0, 1))).toEqual([1]);
    db.prepare(`INSERT INTO captures (target, state, started_at_us) VALUES ('t', 'done', 1)`).run();
    const next: Migration = {
      version: 2,
      description: 'test column',
      sql: 'ALTER TABLE captures ADD COLUMN note TEXT;',
    };
    expect(migrate(db, [...MIGRATIONS.slice(0, 1), next])).toEqual([2]);
    expect(migrate(db, [...MIGRATIONS.slice(0, 1), next])).toEqual([]);
    expect(db.prepare('SELECT target, note FROM captures').get()).toEqual({ target: 't', note: null });
  });

  it('rolls back a failing migration as a whole', () => {
    const db = new Database(file());
    open.push(db);
    migrate(db);
    const bad: Migration = {
      version: SCHEMA_VERSION + 1,
      description: 'broken',
      sql: 'CREATE TABLE x (a); THIS IS NOT SQL;',
    };
    expect(() => migrate(db, [...MIGRATIONS, bad])).toThrow();
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(db.prepare(`SELECT count(*) n FROM sqlite_master WHERE name = 'x'`).get()).toEqual({ n: 0 });
  });

  it('refuses a file from a newer Tapdeck with a sentence', () => {
    const f = file();
    const db = new Database(f);
    db.pragma(`user_version = ${SCHEMA_VERSION + 5}`);
    db.close();
    expect(() => openDb(f)).toThrow(/newer than this Tapdeck understands/);
  });

  it('refuses a file that is not SQLite', () => {
    const f = file();
    writeFileSync(f, 'this is not a database, just text '.repeat(100));
    expect(() => openDb(f)).toThrow(/not a usable capture file/);
  });
});

describe('request log query', () => {
  it('filters and pages newest first, with the total', () => {
    const db = openDb(file());
    open.push(db);
    const c = createCapture(db, { target: 't', startedAtUs: 1 });
    const spans: Span[] = [];
    for (let i = 0; i < 50; i++) {
      spans.push(
        span({
          start_time_us: 1_700_000_000_000_000 + i * 1000,
          request_type: i % 2 ? 'POST' : 'GET',
          response_code: i % 10 === 0 ? 502 : 200,
          response_status: i % 10 === 0 ? 'server_error' : 'ok',
          request_resource: `/api/items?id=${i}`,
          x_request_id_0: `r-${i}`,
          observation_point: i % 3 ? 's-p' : 'c-p',
        }),
      );
    }
    insertSpans(db, c, spans);
    const all = querySpans(db, { limit: 10 });
    expect(all.total).toBe(50);
    expect(all.rows.map((r) => r.x_request_id_0)).toEqual([
      'r-49',
      'r-48',
      'r-47',
      'r-46',
      'r-45',
      'r-44',
      'r-43',
      'r-42',
      'r-41',
      'r-40',
    ]);
    expect(querySpans(db, { status: 'server_error' }).total).toBe(5);
    expect(querySpans(db, { method: 'post' }).total).toBe(25);
    expect(querySpans(db, { path: 'id=4' }).total).toBe(11); // 4, 40..49
    expect(querySpans(db, { xRequestId: 'r-7' }).rows.map((r) => r.request_resource)).toEqual(['/api/items?id=7']);
    expect(querySpans(db, { observationPoints: ['c-p'] }).total).toBe(17);
    expect(querySpans(db, { minCode: 500, maxCode: 599, method: 'GET' }).total).toBe(5);
  });
});

describe('Store (worker thread)', () => {
  it('batches appended spans and reads them back after flush', async () => {
    const store = await Store.open(file());
    try {
      const id = await store.createCapture({ target: 'u@h', startedAtUs: 5 });
      for (let i = 0; i < 30; i++) store.appendSpans(id, [span({ x_request_id_0: `w-${i}` })]);
      await store.flush();
      const page = await store.querySpans({ captureId: id, limit: 100 });
      expect(page.total).toBe(30);
      const info = await store.getCapture(id);
      expect(info?.stats.spans).toBe(30);
      expect(info?.target).toBe('u@h');
    } finally {
      await store.close();
    }
  });

  it('reports a file it cannot open as a rejected open, with the path', async () => {
    await expect(Store.open('/nonexistent-dir/x.sqlite')).rejects.toThrow(/nonexistent-dir/);
  });
});
