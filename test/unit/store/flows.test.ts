// The flows table: one row per connection per observation point, upserted as the
// collector's periodic `flow` records arrive, closed by the final one; and the
// `tapdeck flows` CLI over a real capture file.

import Database from 'better-sqlite3';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FLOW_FIELDS, type Flow } from '../../../main/api/records.ts';
import { createCapture, openDb, queryFlows, upsertFlows, upsertNetns } from '../../../main/store/db.ts';
import { migrate, MIGRATIONS } from '../../../main/store/schema.ts';
import { runCli } from '../../support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'td-flows-'));
let n = 0;
const file = () => join(dir, `f${n++}.sqlite`);

function flow(over: Partial<Flow> = {}): Flow {
  return {
    flow_id: 1,
    signal_source: 'packet',
    observation_point: 'c',
    node: 'gw1',
    netns: 4026532178,
    interface: 'eth0',
    client_ip: '198.18.0.10',
    client_port: 40000,
    server_ip: '198.18.0.20',
    server_port: 80,
    l4_protocol: 'TCP',
    start_time_us: 1_700_000_000_000_000,
    end_time_us: 1_700_000_005_000_000,
    duration_us: 5_000_000,
    packet_tx: 3,
    packet_rx: 2,
    byte_tx: 100,
    byte_rx: 300,
    connect_latency_us: 40,
    srtt_us: 55,
    retrans_tx: 0,
    retrans_rx: 0,
    rst_tx: 0,
    rst_rx: 0,
    zero_win_tx: 0,
    zero_win_rx: 0,
    close_reason: null,
    final: false,
    ...over,
  };
}

const open: Database.Database[] = [];
afterEach(() => open.splice(0).forEach((d) => d.close()));

describe('flows table', () => {
  it('keeps one row per flow: updates replace it, the final record closes it', () => {
    const db = openDb(file());
    open.push(db);
    const c = createCapture(db, { target: 't', startedAtUs: 1 });
    upsertFlows(db, c, [flow(), flow({ flow_id: 2, observation_point: 's', interface: 'tdv-gw' })]);
    upsertFlows(db, c, [flow({ packet_tx: 9, byte_tx: 900 })]);
    let page = queryFlows(db, { captureId: c });
    expect(page.total).toBe(2);
    const f1 = page.rows.find((r) => r.flow_id === 1)!;
    expect([f1.packet_tx, f1.byte_tx, f1.final]).toEqual([9, 900, false]);

    upsertFlows(db, c, [flow({ byte_tx: 1000, close_reason: 'fin', final: true })]);
    // A periodic record that arrives late does not reopen the flow.
    upsertFlows(db, c, [flow({ byte_tx: 5 })]);
    page = queryFlows(db, { captureId: c, closeReason: 'fin' });
    expect(page.rows.map((r) => [r.flow_id, r.byte_tx, r.final, r.close_reason])).toEqual([[1, 1000, true, 'fin']]);
    expect(queryFlows(db, { observationPoints: ['s'] }).rows.map((r) => r.interface)).toEqual(['tdv-gw']);
    expect(queryFlows(db, { ip: '198.18.0.20', port: 80 }).total).toBe(2);
    expect(queryFlows(db, { interface: 'nope' }).total).toBe(0);
  });

  it('migrates a version-1 file forward and keeps its spans', () => {
    const f = file();
    const raw = new Database(f);
    migrate(raw, MIGRATIONS.slice(0, 1));
    raw.prepare(`INSERT INTO captures (target, state, started_at_us) VALUES ('t', 'done', 1)`).run();
    raw.close();
    const db = openDb(f);
    open.push(db);
    expect(db.prepare('SELECT count(*) AS n FROM captures').get()).toEqual({ n: 1 });
    upsertFlows(db, 1, [flow()]);
    expect(queryFlows(db, {}).total).toBe(1);
  });

  it('stores network namespaces with their interfaces', () => {
    const db = openDb(file());
    open.push(db);
    const c = createCapture(db, { target: 't', startedAtUs: 1 });
    const ns = {
      netns: 4026532178,
      names: ['tdlab-client'],
      host: false,
      interfaces: [{ ifindex: 2, name: 'eth0', kind: 'veth', link: 192, loopback: false, addresses: ['198.18.0.10'] }],
    };
    upsertNetns(db, c, ns);
    upsertNetns(db, c, { ...ns, names: ['renamed'] });
    const rows = db.prepare('SELECT * FROM netns').all() as { names: string; interfaces: string }[];
    expect(rows).toHaveLength(1);
    expect(JSON.parse(rows[0]!.names)).toEqual(['renamed']);
    expect(JSON.parse(rows[0]!.interfaces)[0].addresses).toEqual(['198.18.0.10']);
  });
});

describe('tapdeck flows', () => {
  it('prints flows with the record model names in --json, and a table otherwise', async () => {
    const f = file();
    const db = openDb(f);
    const c = createCapture(db, { target: 't', startedAtUs: 1 });
    upsertFlows(db, c, [
      flow(),
      flow({ flow_id: 2, start_time_us: 1_700_000_001_000_000, rst_rx: 1, close_reason: 'server_reset', final: true }),
    ]);
    db.close();
    const r = await runCli(['flows', '--db', f, '--json', '--limit', '1']);
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as Record<string, unknown>[];
    expect(rows).toHaveLength(1);
    expect(Object.keys(rows[0]!)).toEqual(['id', 'capture_id', ...FLOW_FIELDS]);
    expect(rows[0]!['close_reason']).toBe('server_reset');
    expect(rows[0]!['final']).toBe(true);

    const t = await runCli(['flows', '--db', f]);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/198\.18\.0\.10:40000 +198\.18\.0\.20:80 +3\/2 +100\/300 +40µs +55µs .*open/);
    expect(t.stdout).toMatch(/0\/1 .*server_reset/);
    expect(t.stderr).toMatch(/2 of 2 matching flows/);
  });

  it('says what to do with a missing file or bad signals', async () => {
    const r = await runCli(['flows', '--db', join(dir, 'missing.sqlite')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/does not exist: capture into it first/);
    const s = await runCli(['capture', '--target', 'x@127.0.0.1', '--db', file(), '--signals', 's,x']);
    expect(s.code).toBe(2);
    expect(s.stderr).toMatch(/give a comma list of s \(syscall spans\), n \(packet spans and flows\)/);
  });
});
