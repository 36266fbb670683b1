// `tapdeck trace`, run as a user runs it, on a capture file of hand-built spans:
// --json prints the Trace, the text tree shows one span per line, and bad input gets
// a sentence saying what to do.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Trace } from '../../../main/api/trace.ts';
import { createCapture, insertSpans, openDb } from '../../../main/store/db.ts';
import { runCli } from '../../support/cli.ts';
import { sp, T0 } from '../trace/fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'td-cli-trace-'));
const db = join(dir, 'c.sqlite');

beforeAll(() => {
  const conn = openDb(db);
  const cap = createCapture(conn, { target: 'root@n1', startedAtUs: T0 });
  insertSpans(conn, cap, [
    sp({ at: 0, dur: 10_000, x_request_id_1: 'r1', request_resource: '/chain/x', endpoint: '/chain/x' }),
    sp({
      at: 1_000,
      dur: 8_000,
      observation_point: 'c-p',
      x_request_id_0: 'r1',
      request_domain: 'svca',
      request_resource: '/chain/x',
      endpoint: '/chain/x',
      req_tcp_seq: 5,
    }),
    sp({
      at: 1_500,
      dur: 7_000,
      pid: 200,
      process_name: 'node',
      x_request_id_0: 'r1',
      request_domain: 'svca',
      request_resource: '/chain/x',
      endpoint: '/chain/x',
      req_tcp_seq: 5,
    }),
  ]);
  conn.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('tapdeck trace', () => {
  it('--json prints the assembled Trace', async () => {
    const r = await runCli(['trace', '--db', db, '--request-id', 'r1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const t = JSON.parse(r.stdout) as Trace;
    expect(t.spanCount).toBe(3);
    const root = t.roots[0]!;
    expect(root).toMatchObject({ depth: 0, kind: 'S', linkedBy: 'start', selfTimeUs: 2_000 });
    expect(root.span).toMatchObject({ observation_point: 's-p', request_resource: '/chain/x', x_request_id_1: 'r1' });
    expect(root.children[0]!.children[0]!).toMatchObject({
      depth: 2,
      renderStartUs: T0 + 1_500,
      renderEndUs: T0 + 8_500,
    });
    expect(root.children[0]!.children[0]!.span.process_name).toBe('node');
  });

  it('prints an indented tree: kind, observation point, process, method and resource, status, duration, self time', async () => {
    const r = await runCli(['trace', '--db', db, '--span', '3']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^trace from span 3: 3 spans, 10\.00 ms, \d+ search rounds$/);
    expect(lines.slice(1)).toEqual([
      'S s-p   nginx[100]@n1  GET gw/chain/x  200  10.00 ms  self 2.00 ms  (#1, x_request_id)',
      '  S c-p   nginx[100]@n1  GET svca/chain/x  200  8.00 ms  self 1.00 ms  (#2, x_request_id)',
      '    S s-p   node[200]@n1  GET svca/chain/x  200  7.00 ms  self 7.00 ms  (#3, start)',
    ]);
  });

  it('says what to do when nothing matches (exit 1)', async () => {
    const r = await runCli(['trace', '--db', db, '--request-id', 'nope']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^tapdeck: No span in this capture file has X-Request-ID "nope": check the id/);
  });

  it('refuses bad arguments with a sentence (exit 2)', async () => {
    const none = await runCli(['trace', '--db', db]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/exactly one of --request-id ID, --trace-id ID or --span ID/);
    const two = await runCli(['trace', '--db', db, '--request-id', 'r1', '--span', '1']);
    expect(two.code).toBe(2);
    const bad = await runCli(['trace', '--db', db, '--span', 'abc']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--span "abc" is not a span id/);
    const missing = await runCli(['trace', '--db', join(dir, 'none.sqlite'), '--span', '1']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/does not exist: capture into it first/);
  });
});
