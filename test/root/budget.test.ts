// The collector's self-enforced budget, for real (root, eBPF, the lab's nginx): with a
// CPU or memory budget it cannot meet, it samples sockets, counts every skipped syscall
// and forgotten connection in its stats frames, says so on stderr, keeps running, and
// (for CPU) traces everything again once the load is gone. Ground truth: what the load
// generator sent and got back.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameDecoder, type Frame } from '../../main/ingest/frames.ts';
import { COLLECTOR_BIN, isRoot, labDown, labUp, loadedCollectorPrograms, runLoad, type Lab } from '../support/lab.ts';

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

async function until(what: string, cond: () => boolean, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Budget {
  max_cpu_pct: number;
  max_rss_bytes: number;
  cpu_pct: number;
  sample_rate: number;
  over: 'cpu' | 'rss' | null;
}
const stats = (r: Run) => r.frames.filter((f) => f.type === 'stats').map((f) => f.body);
const budgetOf = (s: Record<string, unknown>) => s['budget'] as Budget;
const drops = (s: Record<string, unknown>) => s['drops'] as Record<string, number>;

interface Sent {
  status: number;
  x_request_id_sent: string | null;
}

describe.skipIf(!isRoot)('collector budget on the lab gateway (root, eBPF)', () => {
  let lab: Lab;
  let tmp: string;
  beforeAll(() => {
    if (!existsSync(COLLECTOR_BIN)) throw new Error(`${COLLECTOR_BIN} is missing: run npm run build:collector`);
    lab = labUp();
    tmp = mkdtempSync(join(tmpdir(), 'td-budget-'));
  });
  afterAll(() => {
    labDown();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('over its CPU budget it samples sockets, counts what it skips, and recovers when the load stops', async () => {
    // 0.8 % of a core: an idle collector (about 0.4 % here: the ring-buffer poll and
    // the per-second /proc rescan) stays under it; one tracing every new connection
    // of this load (1,000+ spans/s, about 1.3 %) does not.
    const run = startCollector(['--process', lab.LAB_NGINX_PID, '--duration', '120s', '--max-cpu', '0.8']);
    await until('hello', () => run.frames.some((f) => f.type === 'hello'), 15_000);
    expect(run.frames[0]?.body['budget']).toEqual({ max_cpu_pct: 0.8, max_rss_bytes: 50 * 1024 * 1024 });
    await until('the first stats frame', () => stats(run).length > 0, 5000);

    const out = join(tmp, 'cpu-load.json');
    const summary = await runLoad(lab, { count: 6000, concurrency: 16, out, timeLimitSec: 60, keepalive: false });
    expect(summary.sent).toBe(6000);
    const shedding = stats(run).filter((s) => budgetOf(s).over === 'cpu' && budgetOf(s).sample_rate < 1);
    expect(shedding.length, run.stderr).toBeGreaterThan(0);
    expect(run.stderr).toContain('over the --max-cpu 0.8% budget');

    // Load gone: back to tracing every socket within seconds.
    await until('full sampling again', () => budgetOf(stats(run).at(-1)!).sample_rate === 1, 30_000);
    expect(budgetOf(stats(run).at(-1)!).over).toBeNull();
    expect(run.stderr).toContain('back under budget');

    run.child.stdin.end();
    expect(await run.exited, run.stderr).toBe(0);
    expect(run.frames.at(-1)?.body).toMatchObject({ reason: 'stdin_closed', detached: true });
    expect(loadedCollectorPrograms()).toEqual([]);

    const final = stats(run).at(-1)!;
    expect(final['final']).toBe(true);
    // Every syscall of an unsampled socket was counted in the kernel.
    expect(drops(final)['sampled_out']).toBeGreaterThan(0);

    // The requests that were traced are traced whole: each s-p span matches what the
    // client got for that X-Request-ID; the others are missing, not wrong.
    const sent = (JSON.parse(readFileSync(out, 'utf8')) as Sent[]).filter((r) => r.x_request_id_sent);
    const byId = new Map(sent.map((r) => [r.x_request_id_sent!, r.status]));
    const sp = run.frames
      .filter((f) => f.type === 'span' && f.body['observation_point'] === 's-p')
      .map((f) => f.body)
      .filter((s) => byId.has(s['x_request_id_0'] as string));
    expect(sp.length).toBeGreaterThan(0);
    expect(sp.length).toBeLessThan(byId.size);
    for (const s of sp) expect(s['response_code']).toBe(byId.get(s['x_request_id_0'] as string));
  });

  it('over its memory budget it sheds down to nothing, says so, and keeps running', async () => {
    // 1 MB: no collector fits, so it must shed everything and stay up.
    const run = startCollector(['--process', lab.LAB_NGINX_PID, '--duration', '60s', '--max-rss', '1']);
    await until('shedding everything', () => stats(run).some((s) => budgetOf(s).sample_rate === 0), 20_000);
    const s0 = stats(run).find((s) => budgetOf(s).sample_rate === 0)!;
    expect(budgetOf(s0).over).toBe('rss');
    expect(run.stderr).toContain('over the --max-rss 1 MB budget');
    expect(run.stderr).toContain('tracing 0.0% of sockets');

    const summary = await runLoad(lab, {
      count: 200,
      concurrency: 4,
      out: join(tmp, 'rss-load.json'),
      timeLimitSec: 30,
    });
    expect(summary.sent).toBe(200);
    const n = stats(run).length;
    await until('a stats frame after the load', () => stats(run).length > n, 5000);

    run.child.stdin.end();
    expect(await run.exited, run.stderr).toBe(0);
    const final = stats(run).at(-1)!;
    expect(final['final']).toBe(true);
    expect(budgetOf(final)).toMatchObject({ sample_rate: 0, over: 'rss', max_rss_bytes: 1024 * 1024 });
    // 200 requests through the gateway, none traced, all counted as skipped syscalls.
    expect(drops(final)['sampled_out']).toBeGreaterThanOrEqual(200);
    const after = run.frames.filter(
      (f) => f.type === 'span' && (f.body['request_resource'] as string | undefined)?.startsWith('/api/'),
    );
    expect(after).toEqual([]);
    expect(loadedCollectorPrograms()).toEqual([]);
  });
});
