// Migration 2: the `is_tls` span column and the process metadata columns (netns,
// container_id, gateway), through the store and through `tapdeck requests --json`.

import Database from 'better-sqlite3';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createCapture,
  insertSpans,
  listProcesses,
  openDb,
  querySpans,
  upsertProcess,
} from '../../../main/store/db.ts';
import { migrate, MIGRATIONS } from '../../../main/store/schema.ts';
import { runCli } from '../../support/cli.ts';
import type { Span } from '../../../main/api/records.ts';
import { makeSpan } from '../web/span-fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'td-tls-'));
let n = 0;
const file = () => join(dir, `c${n++}.sqlite`);
const open: Database.Database[] = [];
const span = (over: Partial<Span>): Span => ({
  ...makeSpan({
    op: 's-p',
    method: 'GET',
    path: '/api/x',
    code: 200,
    xrid: 'x',
    startUs: 1_700_000_000_000_000,
    durationUs: 5,
  }),
  ...over,
});
afterEach(() => open.splice(0).forEach((d) => d.close()));

describe('is_tls and process metadata (migration 2)', () => {
  it('stores is_tls as 0/1 and reads it back as a boolean; spans without it stay null', () => {
    const f = file();
    const db = openDb(f);
    open.push(db);
    const c = createCapture(db, { target: 't', startedAtUs: 1 });
    const { is_tls: _ignored, ...legacy } = span({ x_request_id_0: 'old' });
    insertSpans(db, c, [
      span({ x_request_id_0: 'tls', is_tls: true, server_port: 443 }),
      span({ x_request_id_0: 'plain', is_tls: false, observation_point: 'c-p' }),
      legacy,
    ]);
    const raw = db.prepare(`SELECT x_request_id_0 AS x, is_tls FROM spans ORDER BY id`).all();
    expect(raw).toEqual([
      { x: 'tls', is_tls: 1 },
      { x: 'plain', is_tls: 0 },
      { x: 'old', is_tls: null },
    ]);
    const byRid = Object.fromEntries(querySpans(db, {}).rows.map((r) => [r.x_request_id_0, r.is_tls]));
    expect(byRid).toEqual({ tls: true, plain: false, old: null });
  });

  it('migrates a version-1 file forward, keeping its rows', () => {
    const f = file();
    const v1 = new Database(f);
    migrate(v1, MIGRATIONS.slice(0, 1));
    v1.prepare(`INSERT INTO captures (id, target, state, started_at_us) VALUES (1, 't', 'done', 1)`).run();
    v1.prepare(`INSERT INTO processes (capture_id, pid, process_name) VALUES (1, 7, 'nginx')`).run();
    v1.close();
    const db = openDb(f);
    open.push(db);
    expect(db.pragma('user_version', { simple: true })).toBeGreaterThanOrEqual(2);
    expect(listProcesses(db, 1)).toEqual([
      {
        capture_id: 1,
        pid: 7,
        ppid: null,
        process_name: 'nginx',
        cmdline: null,
        exe: null,
        netns: null,
        container_id: null,
        gateway: null,
      },
    ]);
  });

  it('keeps the process frame fields, a later frame of the same pid replacing the earlier', () => {
    const db = openDb(file());
    open.push(db);
    const c = createCapture(db, { target: 't', startedAtUs: 1 });
    const kong = {
      pid: 100,
      ppid: 1,
      process_name: 'nginx',
      cmdline: 'nginx: master process /usr/local/openresty/nginx/sbin/nginx -p /usr/local/kong -c nginx.conf',
      exe: '/usr/local/openresty/nginx/sbin/nginx',
      netns: 4026531840,
      container_id: '3f1c0a9e5b7d4c2a8e6f1b3d5c7a9e0f2b4d6c8e0a1b3c5d7e9f1a3b5c7d9e0f',
      gateway: 'kong',
    };
    upsertProcess(db, c, { ...kong, gateway: null });
    upsertProcess(db, c, kong);
    upsertProcess(db, c, { pid: 101, ppid: 100, process_name: 'nginx', cmdline: 'nginx: worker process', exe: null });
    expect(listProcesses(db, c)).toEqual([
      { capture_id: c, ...kong },
      {
        capture_id: c,
        pid: 101,
        ppid: 100,
        process_name: 'nginx',
        cmdline: 'nginx: worker process',
        exe: null,
        netns: null,
        container_id: null,
        gateway: null,
      },
    ]);
  });

  it('tapdeck requests --json shows is_tls', async () => {
    const f = file();
    const db = openDb(f);
    const c = createCapture(db, { target: 't', startedAtUs: 1 });
    insertSpans(db, c, [
      span({ x_request_id_0: 'tls', is_tls: true }),
      span({ x_request_id_0: 'plain', is_tls: false }),
    ]);
    db.close();
    const r = await runCli(['requests', '--db', f, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as { x_request_id_0: string; is_tls: boolean | null }[];
    expect(Object.fromEntries(rows.map((x) => [x.x_request_id_0, x.is_tls]))).toEqual({ tls: true, plain: false });
  });
});
