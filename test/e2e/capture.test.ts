// End to end, as an SRE would run it: lab up → `tapdeck capture` over SSH as the sudo
// user → 500 requests through the gateway → `tapdeck requests --json`, checked against
// what the load generator sent and nginx's own access log. Then the error paths a user
// meets (host keys, sudo, unreachable), and web mode in headless Chromium.
// nginx stands in for Kong/APISIX (not installable here); the lab configures it the
// way they proxy: X-Request-ID injected, upstream keep-alive.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredSpan } from '../../main/api/records.ts';
import { APP_ROOT } from '../../main/paths.ts';
import { launchChromium } from '../support/browser.ts';
import { runCli, startCli } from '../support/cli.ts';
import { isRoot, labDown, labUp, loadedCollectorPrograms, readAccessLog, runLoad, type Lab } from '../support/lab.ts';

const work = mkdtempSync(join(tmpdir(), 'td-e2e-'));
const ARTIFACTS = join(APP_ROOT, 'test', 'artifacts');

interface LoadRecord {
  id: number;
  method: string;
  path: string;
  status: number;
  x_request_id_sent: string | null;
  x_request_id_received: string | null;
  ms: number;
}

async function until(what: string, cond: () => boolean, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `tapdeck capture` arguments for a lab target, with the lab's key. */
function captureArgs(target: string, knownHosts: string, db: string, ...extra: string[]): string[] {
  return [
    'capture',
    '--target',
    target,
    '--identity',
    lab.LAB_SSH_KEY,
    '--known-hosts',
    knownHosts,
    '--db',
    db,
    ...extra,
  ];
}

function leftoverDirs(): string[] {
  return readdirSync('/tmp').filter((n) => /^tapdeck\.[A-Za-z0-9]{8}$/.test(n));
}

let lab: Lab;

describe.skipIf(!isRoot)('tapdeck capture over SSH, end to end', () => {
  let db: string;
  let knownHosts: string;
  let spans: StoredSpan[];
  let sent: LoadRecord[];
  beforeAll(() => {
    lab = labUp();
    db = join(work, 'capture.sqlite');
    knownHosts = join(work, 'known_hosts');
    mkdirSync(ARTIFACTS, { recursive: true });
  });
  afterAll(() => labDown());

  it('refuses an unknown host key unless told to accept it', async () => {
    const r = await runCli(
      captureArgs(lab.LAB_SSH_TARGET, knownHosts, join(work, 'refused.sqlite'), '--duration', '5s'),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[127\.0\.0\.1\]:2222 is not in .*known_hosts.*--accept-new-host-key/);
    expect(existsSync(knownHosts)).toBe(false);
  });

  it('captures 500 requests through the gateway into SQLite', async () => {
    const before = leftoverDirs();
    const cap = startCli(
      captureArgs(
        lab.LAB_SSH_TARGET,
        knownHosts,
        db,
        '--accept-new-host-key',
        '--process',
        lab.LAB_NGINX_PID,
        '--duration',
        '120s',
      ),
    );
    await until('the collector to run', () => /collector .* running on/.test(cap.stderrSoFar()), 30_000);
    expect(readFileSync(knownHosts, 'utf8')).toMatch(/^\[127\.0\.0\.1\]:2222 ssh-ed25519 /m);

    const out = join(work, 'load.json');
    const summary = await runLoad(lab, { count: 500, concurrency: 8, out, timeLimitSec: 90 });
    expect(summary.sent).toBe(500);
    expect(summary.errors).toBe(0);
    sent = JSON.parse(readFileSync(out, 'utf8')) as LoadRecord[];
    await new Promise((r) => setTimeout(r, 1500));
    cap.child.kill('SIGINT'); // what Ctrl-C does: stop, detach, clean up
    const r = await cap.result;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/done: stopped/);

    // nothing left on the node: no collector directory, no BPF programs
    expect(leftoverDirs().filter((d) => !before.includes(d))).toEqual([]);
    expect(loadedCollectorPrograms()).toEqual([]);

    const q = await runCli(['requests', '--db', db, '--json', '--limit', '10000']);
    expect(q.code, q.stderr).toBe(0);
    spans = JSON.parse(q.stdout) as StoredSpan[];
    expect(spans.length).toBeGreaterThan(0);
  });

  it('has at least 99% of requests with the right method, path and status', () => {
    const inbound = spans.filter((s) => s.observation_point === 's-p');
    const byXrid = new Map<string, StoredSpan[]>();
    for (const s of inbound) {
      const k = s.x_request_id_1 ?? s.x_request_id_0;
      if (k) byXrid.set(k, [...(byXrid.get(k) ?? []), s]);
    }
    let found = 0;
    const missing: string[] = [];
    for (const req of sent) {
      const id = req.x_request_id_received;
      const match = id ? byXrid.get(id) : undefined;
      if (
        match?.length === 1 &&
        match[0]!.request_type === req.method &&
        match[0]!.request_resource === req.path &&
        match[0]!.response_code === req.status
      )
        found++;
      else
        missing.push(
          `${req.method} ${req.path} ${req.status} ${id}: ${JSON.stringify(match?.map((m) => [m.request_type, m.request_resource, m.response_code]))}`,
        );
    }
    const ratio = found / sent.length;
    console.log(`capture ratio: ${found}/${sent.length} = ${(ratio * 100).toFixed(2)}% (s-p spans: ${inbound.length})`);
    expect(ratio, missing.slice(0, 5).join('\n')).toBeGreaterThanOrEqual(0.99);
    for (const s of inbound) expect(s.node).toBeTruthy();
  });

  it('has durations consistent with nginx $request_time', () => {
    const log = new Map(readAccessLog(lab).map((l) => [l.req_id, l]));
    const diffs: number[] = [];
    for (const s of spans.filter((x) => x.observation_point === 's-p')) {
      const l = log.get(s.x_request_id_1 ?? '');
      if (l) diffs.push(Math.abs(s.duration_us / 1000 - l.request_time * 1000));
    }
    diffs.sort((a, b) => a - b);
    const p95 = diffs[Math.floor(diffs.length * 0.95)]!;
    console.log(
      `|span duration - $request_time|: median ${diffs[diffs.length >> 1]!.toFixed(2)} ms, p95 ${p95.toFixed(2)} ms over ${diffs.length}`,
    );
    expect(diffs.length).toBeGreaterThanOrEqual(495);
    expect(p95).toBeLessThan(5);
  });

  it('links each gateway inbound span to its upstream span by X-Request-ID', () => {
    const upstream = new Map<string, StoredSpan[]>();
    for (const s of spans.filter((x) => x.observation_point === 'c-p')) {
      if (s.x_request_id_0) upstream.set(s.x_request_id_0, [...(upstream.get(s.x_request_id_0) ?? []), s]);
    }
    const proxied = spans.filter((s) => s.observation_point === 's-p' && !s.request_resource?.startsWith('/bad/'));
    let linked = 0;
    for (const s of proxied) {
      const up = upstream.get(s.x_request_id_1 ?? '');
      if (up?.length === 1 && up[0]!.request_type === s.request_type && up[0]!.response_code === s.response_code)
        linked++;
    }
    console.log(`inbound/upstream pairs sharing X-Request-ID: ${linked}/${proxied.length}`);
    expect(linked / proxied.length).toBeGreaterThanOrEqual(0.99);
  });

  it('refuses a changed host key, and says so', async () => {
    const forged = join(work, 'known_hosts_changed');
    // a different, valid ed25519 key recorded for the lab's sshd
    writeFileSync(
      forged,
      '[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n',
    );
    const r = await runCli(
      captureArgs(
        lab.LAB_SSH_TARGET,
        forged,
        join(work, 'changed.sqlite'),
        '--accept-new-host-key',
        '--duration',
        '5s',
      ),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/host key of \[127\.0\.0\.1\]:2222 has CHANGED/);
  });

  it('explains a user without passwordless sudo', async () => {
    const r = await runCli(
      captureArgs(
        lab.LAB_SSH_NOSUDO_TARGET,
        knownHosts,
        join(work, 'nosudo.sqlite'),
        '--accept-new-host-key',
        '--duration',
        '5s',
      ),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot run sudo without a password.*NOPASSWD/);
  });

  it('explains an unreachable node', async () => {
    const r = await runCli(
      captureArgs('tdlab@127.0.0.1:1', knownHosts, join(work, 'unreachable.sqlite'), '--duration', '5s'),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/127\.0\.0\.1:1 refused the connection: is sshd running there/);
  });

  it('explains a key the node does not accept', async () => {
    const wrongKey = join(work, 'wrong_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', wrongKey]);
    const r = await runCli([
      ...captureArgs(lab.LAB_SSH_TARGET, knownHosts, join(work, 'wrongkey.sqlite'), '--duration', '5s'),
      '--identity',
      wrongKey,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/refused the key for user tdlab: add your public key/);
  });

  it('keeps what was captured when the collector dies, and still cleans the node', async () => {
    const before = leftoverDirs();
    const killedDb = join(work, 'killed.sqlite');
    const cap = startCli(
      captureArgs(lab.LAB_SSH_TARGET, knownHosts, killedDb, '--process', lab.LAB_NGINX_PID, '--duration', '120s'),
    );
    await until('the collector to run', () => /collector .* running on/.test(cap.stderrSoFar()), 30_000);
    await runLoad(lab, { count: 50, concurrency: 2, out: join(work, 'load-killed.json'), timeLimitSec: 30 });
    await until('spans to arrive', () => /running: \d+ events, [1-9]\d* spans/.test(cap.stderrSoFar()), 10_000);
    execFileSync('pkill', ['-KILL', '-f', '/tmp/tapdeck\\.[A-Za-z0-9]+/tapdeck-collector']);
    const r = await cap.result;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/failed: The collector ended unexpectedly .*Spans received so far are kept/);
    const q = await runCli(['requests', '--db', killedDb, '--json', '--limit', '1000']);
    const rows = JSON.parse(q.stdout) as StoredSpan[];
    expect(rows.filter((s) => s.observation_point === 's-p').length).toBeGreaterThanOrEqual(45);
    await until('the node to be clean', () => leftoverDirs().filter((d) => !before.includes(d)).length === 0, 5_000);
    expect(loadedCollectorPrograms()).toEqual([]);
  });

  it('leaves nothing on the node when Tapdeck itself is killed mid-capture', async () => {
    const before = leftoverDirs();
    const cap = startCli(
      captureArgs(
        lab.LAB_SSH_TARGET,
        knownHosts,
        join(work, 'orphan.sqlite'),
        '--process',
        lab.LAB_NGINX_PID,
        '--duration',
        '120s',
      ),
    );
    await until('the collector to run', () => /collector .* running on/.test(cap.stderrSoFar()), 30_000);
    expect(leftoverDirs().filter((d) => !before.includes(d))).toHaveLength(1);
    cap.child.kill('SIGKILL'); // the laptop's side vanishes: the SSH connection drops
    await cap.result;
    await until(
      'the collector to exit and its directory to go',
      () => leftoverDirs().filter((d) => !before.includes(d)).length === 0,
      10_000,
    );
    await until('its BPF programs to be detached', () => loadedCollectorPrograms().length === 0, 10_000);
  });

  it('shows the captured requests in web mode (headless Chromium)', async () => {
    const serve = startCli(['serve', '--db', db]);
    try {
      await until(
        'the web server URL',
        () => /http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]+/.test(serve.stdoutSoFar()),
        20_000,
      );
      const url = /http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]+/.exec(serve.stdoutSoFar())![0];
      const context = await launchChromium(work);
      try {
        const page = context.pages()[0] ?? (await context.newPage());
        await page.goto(url);
        const count = page.getByTestId('request-count');
        await expect
          .poll(async () => (await count.textContent()) ?? '', { timeout: 15_000 })
          .toMatch(new RegExp(`^${spans.length.toLocaleString('en-US')} requests`));
        // a request the load generator sent, found by its X-Request-ID
        const probe = sent.find((r) => r.status === 404)!;
        await page.getByLabel('X-Request-ID').fill(probe.x_request_id_received!);
        await expect.poll(async () => (await count.textContent()) ?? '').toMatch(/^2 requests/);
        const rows = page.locator('table tbody tr');
        expect((await rows.locator('td.c-op').allTextContents()).sort()).toEqual(['c-p', 's-p']);
        expect(await rows.first().locator('td.c-path').textContent()).toBe(probe.path);
        expect(await rows.first().locator('td.c-status').textContent()).toBe('404');
        // Its trace, assembled by the core from what the collector captured: nginx's
        // inbound span with its upstream call inside.
        await rows
          .filter({ has: page.locator('td.c-op', { hasText: 's-p' }) })
          .locator('td.c-path')
          .click();
        const summary = page.locator('.trace-summary');
        await expect.poll(async () => (await summary.textContent()) ?? '', { timeout: 15_000 }).toContain('2 spans');
        expect(await summary.textContent()).toContain(`HTTP GET ${probe.path}`);
        expect(await page.locator('.service-list .service-name').allTextContents()).toEqual(['nginx']);
        // The aggregated view draws after the chart, with a short animation.
        await expect
          .poll(() => page.locator('.where-time-went .d3-flame-graph-label').allTextContents())
          .toContain('nginx');
        await page.screenshot({ path: join(ARTIFACTS, 'e2e-trace.png') });
        await page.getByRole('button', { name: '← Request log' }).click();
        await expect.poll(async () => (await count.textContent()) ?? '').toMatch(/^2 requests/);
        await page.getByRole('button', { name: 'Clear' }).click();
        await expect
          .poll(async () => (await count.textContent()) ?? '')
          .toMatch(new RegExp(`^${spans.length.toLocaleString('en-US')} requests`));
        await page.screenshot({ path: join(ARTIFACTS, 'e2e-request-log.png') });
      } finally {
        await context.close();
      }
    } finally {
      serve.child.kill('SIGTERM');
      await serve.result;
    }
  });
});
