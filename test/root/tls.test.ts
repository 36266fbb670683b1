// TLS plaintext through OpenSSL uprobes, for real: the lab gateway (Debian's nginx,
// libssl.so.3) serves HTTPS on :443 and proxies to plain-HTTP upstreams. Every HTTPS
// request must come out once as an s-p span marked is_tls with the method, path,
// status and X-Request-ID that nginx's access log recorded; the upstream calls as c-p
// spans that are not TLS; and the encrypted bytes as nothing but a count.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { framesOf, startCollector, until } from '../support/collector.ts';
import {
  COLLECTOR_BIN,
  curl,
  isRoot,
  labDown,
  labUp,
  loadedCollectorPrograms,
  readAccessLog,
  runLoad,
  type Lab,
} from '../support/lab.ts';

interface AccessLine {
  pid: number;
  request_method: string;
  request_uri: string;
  status: number;
  upstream_addr: string;
  req_id: string;
  http_x_request_id: string;
  scheme: string;
}

const N = 300;

describe.skipIf(!isRoot)('TLS plaintext on the lab gateway (root, eBPF uprobes)', () => {
  let lab: Lab;
  beforeAll(() => {
    if (!existsSync(COLLECTOR_BIN)) throw new Error(`${COLLECTOR_BIN} is missing: run npm run build:collector`);
    lab = labUp();
  });
  afterAll(() => labDown());

  it('reads every HTTPS exchange as an is_tls s-p span, including workers started after the capture', async () => {
    const run = startCollector(['--process', lab.LAB_NGINX_PID, '--duration', '90s']);
    await until('hello', () => run.frames.some((f) => f.type === 'hello'));
    await until('the libssl probe', () => run.stderr.includes('TLS: probing'), 10_000);
    const hello = framesOf(run, 'hello')[0]!;
    expect((hello['capabilities'] as Record<string, boolean>)['tls']).toBe(true);

    const workersBefore = lab.LAB_NGINX_WORKER_PIDS.split(',').map(Number);
    const out = mkdtempSync(join(tmpdir(), 'td-tls-'));
    // A few known requests first (keep-alive off: one handshake each).
    const tag = `tls-${Date.now()}`;
    const known = [
      { method: 'GET', path: '/api/items?id=1&sort=desc', status: 200 },
      { method: 'POST', path: '/api/users/7', status: 200 },
      { method: 'GET', path: '/status/404', status: 404 },
      { method: 'GET', path: '/bad/x', status: 502 },
    ].map((c, i) => ({ ...c, xrid: `${tag}-${i}` }));
    for (const c of known) {
      expect(curl(lab, c.method, c.path, { 'X-Request-ID': c.xrid }, { https: true }).status).toBe(c.status);
    }
    const first = await runLoad(lab, {
      count: N / 2,
      concurrency: 4,
      out: join(out, 'load1.json'),
      url: lab.LAB_GW_HTTPS_URL,
      extra: ['--request-id-fraction', '0.5'],
    });
    // Reload: the master forks new workers, which the capture has never seen.
    execFileSync('kill', ['-HUP', lab.LAB_NGINX_PID]);
    const master = Number(lab.LAB_NGINX_PID);
    const newWorkers = (): number[] =>
      execFileSync('pgrep', ['-P', String(master)], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean)
        .map(Number)
        .filter((p) => !workersBefore.includes(p));
    await until('new nginx workers', () => newWorkers().length === 2, 10_000);
    // The old workers finish their connections and exit.
    await until(
      'old workers gone',
      () =>
        workersBefore.every(
          (p) => !existsSync(`/proc/${p}`) || readFileSync(`/proc/${p}/stat`, 'utf8').includes(') Z'),
        ),
      15_000,
    );
    const second = await runLoad(lab, {
      count: N / 2,
      concurrency: 4,
      out: join(out, 'load2.json'),
      url: lab.LAB_GW_HTTPS_URL,
      extra: ['--request-id-fraction', '0.5'],
    });
    expect(first.sent + second.sent).toBe(N);
    expect(first.errors + second.errors).toBe(0);

    const log = readAccessLog(lab) as unknown as AccessLine[];
    expect(log).toHaveLength(N + known.length);
    expect(log.every((l) => l.scheme === 'https')).toBe(true);
    await until(
      'all s-p spans',
      () => framesOf(run, 'span').filter((s) => s['observation_point'] === 's-p').length >= log.length,
      15_000,
    ).catch(() => undefined);
    const t0 = performance.now();
    run.child.stdin.end();
    expect(await run.exited, run.stderr).toBe(0);
    const stopMs = performance.now() - t0;
    expect(loadedCollectorPrograms()).toEqual([]);

    const spans = framesOf(run, 'span');
    const sp = spans.filter((s) => s['observation_point'] === 's-p');
    const cp = spans.filter((s) => s['observation_point'] === 'c-p');
    const stats = framesOf(run, 'stats').find((s) => s['final'] === true)!;
    const tls = stats['tls'] as Record<string, number>;

    // Each access-log line: exactly one TLS s-p span with its fields.
    const byReqId = new Map<string, Record<string, unknown>[]>();
    for (const s of sp) {
      const k = s['x_request_id_1'] as string;
      byReqId.set(k, [...(byReqId.get(k) ?? []), s]);
    }
    const missing: string[] = [];
    for (const l of log) {
      const got = byReqId.get(l.req_id) ?? [];
      if (got.length !== 1) {
        missing.push(`${l.request_method} ${l.request_uri} (${l.req_id}): ${got.length} spans`);
        continue;
      }
      const s = got[0]!;
      expect(s).toMatchObject({
        is_tls: true,
        l7_protocol: 'HTTP',
        process_name: 'nginx',
        pid: l.pid,
        request_type: l.request_method,
        request_resource: l.request_uri,
        response_code: l.status,
        client_ip: '198.18.0.10',
        server_ip: lab.LAB_GW_ADDR,
        server_port: 443,
        x_request_id_0: l.http_x_request_id === '' ? null : l.http_x_request_id,
      });
    }
    const ratio = (log.length - missing.length) / log.length;
    console.log(
      `TLS capture: ${log.length - missing.length}/${log.length} HTTPS requests as is_tls s-p spans ` +
        `(ratio ${ratio.toFixed(4)}); ${tls['plaintext_records']} plaintext records, ` +
        `${tls['without_socket']} without a socket, ${tls['encrypted_skipped']} encrypted syscalls skipped; ` +
        `collector cpu ${(((stats['cpu_user_us'] as number) + (stats['cpu_sys_us'] as number)) / 1000).toFixed(0)} ms, ` +
        `rss ${((stats['rss_bytes'] as number) / 1048576).toFixed(1)} MiB; stop ${stopMs.toFixed(0)} ms`,
    );
    expect(missing, missing.slice(0, 10).join('\n')).toEqual([]);
    // Workers forked after the capture began answered part of the traffic, and were read.
    const pidsSeen = new Set(sp.map((s) => s['pid'] as number));
    expect([...pidsSeen].some((p) => !workersBefore.includes(p))).toBe(true);

    // No span from the encrypted bytes: every s-p span is one of the logged requests.
    expect(sp).toHaveLength(log.length);
    expect(sp.every((s) => s['is_tls'] === true)).toBe(true);
    expect(stats['parse_errors']).toEqual(
      Object.fromEntries(Object.keys(stats['parse_errors'] as object).map((k) => [k, 0])),
    );
    expect(tls['encrypted_skipped']).toBeGreaterThan(0);
    expect(tls['libraries']).toBe(1);

    // The upstream calls: plain HTTP, not TLS, one per proxied request, linked by X-Request-ID.
    const proxied = log.filter((l) => l.upstream_addr === '198.18.0.30:8080');
    expect(cp).toHaveLength(proxied.length);
    for (const c of cp) {
      expect(c).toMatchObject({ is_tls: false, server_ip: '198.18.0.30', server_port: 8080 });
    }
    const cpByRid = new Map(cp.map((c) => [c['x_request_id_0'] as string, c]));
    // The first exchange on each upstream connection: nginx connected for it.
    const firstOnConn = new Map<number, Record<string, unknown>>();
    for (const c of [...cp].sort((x, y) => (x['start_time_us'] as number) - (y['start_time_us'] as number))) {
      if (!firstOnConn.has(c['client_port'] as number)) firstOnConn.set(c['client_port'] as number, c);
    }
    let linked = 0;
    for (const l of proxied) {
      const c = cpByRid.get(l.req_id);
      expect(c, `c-p span of ${l.request_uri}`).toBeDefined();
      const s = byReqId.get(l.req_id)![0]!;
      // The upstream call happened inside the inbound exchange...
      expect(c!['start_time_us'] as number).toBeGreaterThanOrEqual(s['start_time_us'] as number);
      expect(c!['end_time_us'] as number).toBeLessThanOrEqual(s['end_time_us'] as number);
      // ...on the same thread-based trace id, except where nginx opened a new upstream
      // connection for it (the request is written a loop turn later: STREAM.md).
      if (c!['syscall_trace_id_request'] === s['syscall_trace_id_request']) linked++;
      else expect(firstOnConn.get(c!['client_port'] as number), `unlinked ${l.request_uri}`).toBe(c);
    }
    console.log(`TLS s-p -> c-p linked by syscall trace id: ${linked}/${proxied.length}`);
  });
});
