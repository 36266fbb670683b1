// End to end over SSH with HTTPS: `tapdeck capture` on the lab gateway while clients
// call it over HTTPS (:443) and plain HTTP (:80); then `tapdeck requests --json` and
// the capture file itself. HTTPS exchanges must be stored with is_tls = 1, plain ones
// with 0, and the traced nginx processes with their gateway and network namespace.

import Database from 'better-sqlite3';
import { mkdtempSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredSpan } from '../../main/api/records.ts';
import { runCli, startCli } from '../support/cli.ts';
import { until } from '../support/collector.ts';
import { isRoot, labDown, labUp, readAccessLog, runLoad, type Lab } from '../support/lab.ts';

const work = mkdtempSync(join(tmpdir(), 'td-e2e-tls-'));

describe.skipIf(!isRoot)('tapdeck capture of HTTPS traffic over SSH, end to end', () => {
  let lab: Lab;
  beforeAll(() => {
    lab = labUp();
  });
  afterAll(() => labDown());

  it('stores HTTPS exchanges as is_tls spans and the processes with their gateway', async () => {
    const db = join(work, 'tls.sqlite');
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
      '--duration',
      '90s',
      '--db',
      db,
    ]);
    await until('the collector to run', () => /collector .* running on/.test(cap.stderrSoFar()), 30_000);
    // The uprobes are attached at the first /proc scan, right after start.
    await new Promise((r) => setTimeout(r, 500));
    const https = await runLoad(lab, {
      count: 200,
      concurrency: 4,
      out: join(work, 'https.json'),
      url: lab.LAB_GW_HTTPS_URL,
    });
    const http = await runLoad(lab, { count: 50, concurrency: 2, out: join(work, 'http.json') });
    expect([https.errors, http.errors]).toEqual([0, 0]);
    await new Promise((r) => setTimeout(r, 1500));
    cap.child.kill('SIGINT');
    const r = await cap.result;
    expect(r.code, r.stderr).toBe(0);

    const q = await runCli(['requests', '--db', db, '--json', '--limit', '10000']);
    expect(q.code, q.stderr).toBe(0);
    const spans = JSON.parse(q.stdout) as StoredSpan[];
    const log = readAccessLog(lab) as unknown as { req_id: string; scheme: string; request_uri: string }[];
    const sp = new Map(spans.filter((s) => s.observation_point === 's-p').map((s) => [s.x_request_id_1, s]));
    let tlsOk = 0;
    let plainOk = 0;
    for (const l of log) {
      const s = sp.get(l.req_id);
      if (l.scheme === 'https' && s?.is_tls === true && s.server_port === 443 && s.request_resource === l.request_uri)
        tlsOk++;
      if (l.scheme === 'http' && s?.is_tls === false && s.server_port === 80 && s.request_resource === l.request_uri)
        plainOk++;
    }
    console.log(`e2e TLS: ${tlsOk}/200 HTTPS and ${plainOk}/50 HTTP requests stored with the right is_tls`);
    expect([tlsOk, plainOk]).toEqual([200, 50]);
    expect(spans.filter((s) => s.observation_point === 'c-p').every((s) => s.is_tls === false)).toBe(true);

    const file = new Database(db, { readonly: true });
    try {
      expect(file.prepare(`SELECT DISTINCT is_tls FROM spans ORDER BY is_tls`).all()).toEqual([
        { is_tls: 0 },
        { is_tls: 1 },
      ]);
      const procs = file.prepare(`SELECT pid, ppid, gateway, netns, container_id FROM processes`).all() as {
        pid: number;
        ppid: number;
        gateway: string | null;
        netns: number | null;
        container_id: string | null;
      }[];
      const master = Number(lab.LAB_NGINX_PID);
      expect(procs.map((p) => p.pid)).toContain(master);
      expect(procs.filter((p) => p.ppid === master)).toHaveLength(2);
      // The gateway namespace tdlab-gw, not the collector's.
      const gwNetns = Number(/net:\[(\d+)\]/.exec(readlinkSync(`/proc/${master}/ns/net`))![1]);
      expect(gwNetns).not.toBe(Number(/net:\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/net'))![1]));
      for (const p of procs) expect(p).toMatchObject({ gateway: 'nginx', container_id: null, netns: gwNetns });
    } finally {
      file.close();
    }
  });
});
