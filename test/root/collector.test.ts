// The collector attached for real (root, eBPF) to the lab's nginx gateway: a known set
// of requests goes through it, and each must come out once per observation point with
// the right fields. Ground truth: what curl sent and got, and nginx's access log.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameDecoder, type Frame } from '../../main/ingest/frames.ts';
import {
  COLLECTOR_BIN,
  curl,
  isRoot,
  labDown,
  labUp,
  loadedCollectorPrograms,
  readAccessLog,
  type Lab,
} from '../support/lab.ts';

interface Run {
  child: ChildProcessWithoutNullStreams;
  frames: Frame[];
  stderr: string;
  exited: Promise<number | null>;
}

function startCollector(args: string[]): Run {
  const child = spawn(COLLECTOR_BIN, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const decoder = new FrameDecoder();
  const run: Run = { child, frames: [], stderr: '', exited: new Promise((r) => child.on('close', (code) => r(code))) };
  child.stdout.on('data', (d: Buffer) => run.frames.push(...decoder.push(d)));
  child.stderr.on('data', (d: Buffer) => (run.stderr += d.toString()));
  return run;
}

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const spans = (r: Run) => r.frames.filter((f) => f.type === 'span').map((f) => f.body);

describe.skipIf(!isRoot)('collector on the lab gateway (root, eBPF)', () => {
  let lab: Lab;
  beforeAll(() => {
    if (!existsSync(COLLECTOR_BIN)) throw new Error(`${COLLECTOR_BIN} is missing: run npm run build:collector`);
    lab = labUp();
  });
  afterAll(() => labDown());

  it('--probe reports a capable kernel', async () => {
    const r = startCollector(['--probe']);
    r.child.stdin.end();
    const code = await r.exited;
    expect(code).toBe(0);
  });

  it('captures each request once per observation point with the right fields', async () => {
    const run = startCollector(['--process', lab.LAB_NGINX_PID, '--duration', '60s']);
    await until('hello', () => run.frames.some((f) => f.type === 'hello'));
    await new Promise((r) => setTimeout(r, 300));

    const tag = `rt-${Date.now()}`;
    const cases = [
      { method: 'GET', path: '/api/items?id=1&sort=desc', status: 200, proxied: true },
      { method: 'POST', path: '/api/users/7', status: 200, proxied: true },
      { method: 'PUT', path: '/api/users/8?force=1', status: 200, proxied: true },
      { method: 'DELETE', path: '/api/items/3', status: 200, proxied: true },
      { method: 'GET', path: '/status/404', status: 404, proxied: true },
      { method: 'GET', path: '/bad/thing?x=1', status: 502, proxied: false },
      { method: 'GET', path: '/slow?ms=300', status: 200, proxied: true, slowMs: 300 },
    ].map((c, i) => ({ ...c, xrid: `${tag}-${i}` }));
    for (const c of cases) {
      const res = curl(lab, c.method, c.path, { 'X-Request-ID': c.xrid });
      expect(res.status, `${c.method} ${c.path}`).toBe(c.status);
    }
    // One request without an X-Request-ID: the gateway injects one (Kong's correlation-id behaviour).
    const injected = curl(lab, 'GET', '/api/injected');
    expect(injected.xRequestId).toMatch(/^[0-9a-f]{32}$/);

    await until(
      'all spans',
      () => spans(run).filter((s) => s['observation_point'] === 's-p').length >= cases.length + 1,
      10_000,
    ).catch(() => undefined);
    run.child.stdin.end(); // the SSH channel closing looks like this
    const t0 = Date.now();
    const code = await run.exited;
    const exitMs = Date.now() - t0;
    expect(code, run.stderr).toBe(0);
    expect(exitMs).toBeLessThan(3000);

    const bye = run.frames.find((f) => f.type === 'bye');
    expect(bye?.body).toMatchObject({ reason: 'stdin_closed', detached: true });
    expect(run.frames.at(-1)?.type).toBe('bye');
    expect(run.frames.some((f) => f.type === 'stats' && f.body['final'] === true)).toBe(true);
    expect(loadedCollectorPrograms()).toEqual([]);

    const all = spans(run);
    const log = readAccessLog(lab);
    for (const c of cases) {
      const sp = all.filter((s) => s['observation_point'] === 's-p' && s['x_request_id_0'] === c.xrid);
      expect(sp, `s-p span of ${c.method} ${c.path}`).toHaveLength(1);
      const s = sp[0]!;
      expect(s).toMatchObject({
        signal_source: 'ebpf',
        l7_protocol: 'HTTP',
        request_type: c.method,
        request_resource: c.path,
        endpoint: c.path.split('?')[0],
        response_code: c.status,
        response_status: c.status >= 500 ? 'server_error' : c.status >= 400 ? 'client_error' : 'ok',
        server_ip: lab.LAB_GW_ADDR,
        server_port: 80,
        client_ip: '198.18.0.10',
        x_request_id_1: c.xrid,
        process_name: 'nginx',
      });
      // nginx's own $request_time (ms resolution) and the span agree.
      const line = log.find((l) => l.req_id === c.xrid)!;
      expect(line).toBeDefined();
      expect(Math.abs((s['duration_us'] as number) / 1000 - line.request_time * 1000)).toBeLessThan(20);
      if (c.slowMs) expect(s['duration_us']).toBeGreaterThanOrEqual(c.slowMs * 1000);

      const cp = all.filter((x) => x['observation_point'] === 'c-p' && x['x_request_id_0'] === c.xrid);
      if (c.proxied) {
        expect(cp, `c-p span of ${c.method} ${c.path}`).toHaveLength(1);
        expect(cp[0]).toMatchObject({
          request_type: c.method,
          response_code: c.status,
          server_ip: '198.18.0.30',
          server_port: 8080,
        });
        // upstream span sits inside the inbound one, and both carry the same thread-based id
        expect(cp[0]!['start_time_us']).toBeGreaterThanOrEqual(s['start_time_us'] as number);
        expect(cp[0]!['end_time_us']).toBeLessThanOrEqual(s['end_time_us'] as number);
        expect(cp[0]!['syscall_trace_id_request']).toBe(s['syscall_trace_id_request']);
      } else {
        expect(cp).toHaveLength(0);
      }
    }
    // S spans only: packet capture (on by default in the collector) adds N spans of the same request.
    const inj = all.filter((s) => s['request_resource'] === '/api/injected' && s['signal_source'] === 'ebpf');
    expect(inj.map((s) => s['observation_point']).sort()).toEqual(['c-p', 's-p']);
    expect(inj.find((s) => s['observation_point'] === 's-p')!['x_request_id_1']).toBe(injected.xRequestId);
    expect(inj.find((s) => s['observation_point'] === 'c-p')!['x_request_id_0']).toBe(injected.xRequestId);
  });

  it('stops on SIGTERM and at --duration, detaching every program', async () => {
    const a = startCollector(['--process', lab.LAB_NGINX_PID, '--duration', '60s']);
    await until('hello', () => a.frames.some((f) => f.type === 'hello'));
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    expect(a.frames.find((f) => f.type === 'bye')?.body).toMatchObject({ reason: 'signal', detached: true });

    const b = startCollector(['--process', lab.LAB_NGINX_PID, '--duration', '2s']);
    expect(await b.exited).toBe(0);
    expect(b.frames.find((f) => f.type === 'bye')?.body).toMatchObject({ reason: 'duration', detached: true });
    expect(loadedCollectorPrograms()).toEqual([]);
  });
});
