// End to end with packet capture: `tapdeck capture --signals s,n` over SSH into
// SQLite while known requests go through the lab gateway, then `tapdeck requests`
// and `tapdeck flows` read N spans, flows and namespaces back from the file. The
// per-interface details are checked against the raw stream in test/root/packets.test.ts;
// this checks that the app stores what the collector sends.

import Database from 'better-sqlite3';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredFlow, StoredSpan } from '../../main/api/records.ts';
import { runCli, startCli } from '../support/cli.ts';
import { curl, isRoot, labDown, labUp, type Lab } from '../support/lab.ts';

const work = mkdtempSync(join(tmpdir(), 'td-e2e-net-'));

async function until(what: string, cond: () => boolean, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(!isRoot)('tapdeck capture --signals s,n, end to end', () => {
  let lab: Lab;
  const db = join(work, 'net.sqlite');
  const xrids: string[] = [];

  beforeAll(async () => {
    lab = labUp();
    const cap = startCli([
      'capture',
      '--target',
      lab.LAB_SSH_TARGET,
      '--identity',
      lab.LAB_SSH_KEY,
      '--known-hosts',
      join(work, 'known_hosts'),
      '--accept-new-host-key',
      '--process',
      lab.LAB_NGINX_PID,
      '--signals',
      's,n',
      '--duration',
      '60s',
      '--db',
      db,
    ]);
    await until('the collector to run', () => /collector .* running on/.test(cap.stderrSoFar()), 30_000);
    await new Promise((r) => setTimeout(r, 1000));
    for (let i = 0; i < 10; i++) {
      const xrid = `net-e2e-${Date.now()}-${i}`;
      expect(curl(lab, 'GET', `/api/net/${i}`, { 'X-Request-ID': xrid }).status).toBe(200);
      xrids.push(xrid);
    }
    await new Promise((r) => setTimeout(r, 1500));
    cap.child.kill('SIGINT');
    const r = await cap.result;
    expect(r.code, r.stderr).toBe(0);
  });
  afterAll(() => labDown());

  it('stores N spans next to the S spans of each request', async () => {
    const q = await runCli(['requests', '--db', db, '--json', '--limit', '10000']);
    expect(q.code, q.stderr).toBe(0);
    const spans = JSON.parse(q.stdout) as StoredSpan[];
    for (const xrid of xrids) {
      const mine = spans.filter((s) => s.x_request_id_0 === xrid);
      const s = mine.filter((x) => x.signal_source === 'ebpf');
      const n = mine.filter((x) => x.signal_source === 'packet');
      expect(s.map((x) => x.observation_point).sort()).toEqual(['c-p', 's-p']);
      // client → gateway and gateway → svca, each seen on 4 interfaces
      expect(n).toHaveLength(8);
      expect(n.every((x) => x.interface && x.netns && x.pid === null && x.node)).toBe(true);
      const inbound = s.find((x) => x.observation_point === 's-p')!;
      expect(
        n.filter((x) => x.req_tcp_seq === inbound.req_tcp_seq && x.resp_tcp_seq === inbound.resp_tcp_seq),
      ).toHaveLength(4);
    }
    const onlyN = await runCli(['requests', '--db', db, '--json', '--observation-point', 'c', '--limit', '10000']);
    expect((JSON.parse(onlyN.stdout) as StoredSpan[]).every((x) => x.signal_source === 'packet')).toBe(true);
  });

  it('stores flows, one row per connection per observation point, closed by their final record', async () => {
    const q = await runCli(['flows', '--db', db, '--json', '--port', '80', '--limit', '10000']);
    expect(q.code, q.stderr).toBe(0);
    const flows = (JSON.parse(q.stdout) as StoredFlow[]).filter((f) => f.client_ip === '198.18.0.10');
    // 10 curl connections × (4 interfaces + c-p + s-p)
    expect(flows).toHaveLength(60);
    const ids = new Set(flows.map((f) => `${f.flow_id}`));
    expect(ids.size).toBe(60);
    for (const f of flows) {
      expect(f.final, `${f.observation_point} ${f.interface ?? ''} ${f.client_port ?? ''}`).toBe(true);
      expect(f.close_reason).toBe('fin');
      expect(f.byte_tx).toBeGreaterThan(0);
      expect(f.byte_rx).toBeGreaterThan(f.byte_tx);
    }
    const byConn = new Map<number | null, StoredFlow[]>();
    for (const f of flows) byConn.set(f.client_port, [...(byConn.get(f.client_port) ?? []), f]);
    for (const fs of byConn.values()) {
      // every observation point agrees on the bytes of one connection
      expect(new Set(fs.map((f) => `${f.byte_tx}/${f.byte_rx}`)).size).toBe(1);
    }
    const table = await runCli(['flows', '--db', db, '--observation-point', 's-p', '--port', '80']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/s-p +198\.18\.0\.10:\d+ +198\.18\.0\.20:80 .* fin/);
  });

  it('stores the node network namespaces with their interfaces', () => {
    const d = new Database(db, { readonly: true });
    try {
      const rows = d.prepare('SELECT names, host, interfaces FROM netns').all() as {
        names: string;
        host: number;
        interfaces: string;
      }[];
      const client = rows.find((r) => (JSON.parse(r.names) as string[]).includes(lab.LAB_CLIENT_NS));
      expect(client).toBeDefined();
      expect(JSON.parse(client!.interfaces)).toEqual(
        expect.arrayContaining([expect.objectContaining({ name: 'eth0', addresses: ['198.18.0.10'] })]),
      );
      expect(rows.filter((r) => r.host === 1)).toHaveLength(1);
    } finally {
      d.close();
    }
  });
});
