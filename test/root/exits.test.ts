// Every way a capture can end leaves nothing behind on the node (issue 3, section 6):
// for each exit path, within a bounded time, the collector process is gone, every BPF
// program and link it held is released (by the ids it held at the start, with the
// OpenSSL uprobes attached to the lab nginx's libssl), no uprobe event and no packet
// socket of it remains, and, over SSH, its private /tmp/tapdeck.* directory is gone.
// Graceful paths also end with a `bye` frame saying detached: true, within 3 s.
// Each path's stop time is printed at the end (ms from the cause to the last check).

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { StoredSpan } from '../../main/api/records.ts';
import { runCli, startCli, type CliRun } from '../support/cli.ts';
import { startCollector, until, type CollectorRun } from '../support/collector-run.ts';
import { COLLECTOR_BIN, curl, isRoot, labDown, labUp, type Lab } from '../support/lab.ts';
import {
  alive,
  ancestry,
  cmdline,
  comm,
  descendants,
  heldBy,
  untilReleased,
  type Held,
} from '../support/node-state.ts';

const work = mkdtempSync(join(tmpdir(), 'td-exits-'));
/** The programs of the TLS object: their presence proves the uprobes were attached. */
const TLS_PROGS = ['tls_enter_read', 'tls_exit_read', 'tls_enter_write', 'tls_exit_write'];
const results: { path: string; stopMs: number; detachMs: number | null; checked: string }[] = [];

let lab: Lab;

function detachMs(stderr: string): number | null {
  const m = /detached (\d+) BPF programs in (\d+) ms/.exec(stderr);
  return m ? Number(m[2]) : null;
}

/** Waits until `pid` holds the TLS uprobe links besides the syscall tracepoints. */
async function untilTlsAttached(pid: number, stderr: () => string): Promise<Held> {
  await until('the TLS uprobes on the gateway libssl', () => /TLS: probing .*libssl/.test(stderr()), 20_000);
  const held = heldBy(pid);
  const names = held.progs.map((p) => p.name);
  for (const n of TLS_PROGS) expect(names, `the collector holds ${n}`).toContain(n);
  // One link per attached program: tracepoints plus at least SSL_read/SSL_write entry and return.
  expect(held.links.length).toBeGreaterThanOrEqual(held.progs.length - TLS_PROGS.length + 4);
  return held;
}

describe.skipIf(!isRoot)('collector exit paths leave nothing behind (root, eBPF)', () => {
  beforeAll(() => {
    if (!existsSync(COLLECTOR_BIN)) throw new Error(`${COLLECTOR_BIN} is missing: run npm run build:collector`);
    lab = labUp();
  });
  afterAll(() => {
    labDown();
    if (results.length) {
      console.log('\nexit path                              stop ms  detach ms  checked');
      for (const r of results)
        console.log(
          `${r.path.padEnd(38)} ${(Number.isNaN(r.stopMs) ? '-' : r.stopMs.toFixed(0)).padStart(7)}  ${String(r.detachMs ?? '-').padStart(9)}  ${r.checked}`,
        );
    }
  });

  // --- the collector run directly, as root -------------------------------------------

  /** Processes a test started, killed after it if still running (a failed test must not leave one behind). */
  const started: { child: { kill(sig: NodeJS.Signals): boolean; exitCode: number | null } }[] = [];
  function track<T extends { child: { kill(sig: NodeJS.Signals): boolean; exitCode: number | null } }>(r: T): T {
    started.push(r);
    return r;
  }
  afterEach(() => {
    for (const r of started.splice(0)) if (r.child.exitCode === null) r.child.kill('SIGKILL');
    if (lab) for (const p of collectorsUnderSshd()) process.kill(p, 'SIGKILL');
  });

  async function startDirect(
    extra: string[] = [],
  ): Promise<{ run: CollectorRun; held: Held; exitAt: Promise<number> }> {
    const run = track(
      startCollector(['--process', lab.LAB_NGINX_PID, '--duration', '60s', '--otlp-listen', '127.0.0.1:0', ...extra]),
    );
    const exitAt = new Promise<number>((r) => run.child.on('exit', () => r(performance.now())));
    await until('hello', () => run.frames.some((f) => f.type === 'hello'));
    const held = await untilTlsAttached(run.child.pid!, () => run.stderr);
    // Traffic through the probed paths, so the programs are live when the end comes.
    curl(lab, 'GET', '/api/items?exit=1', {}, { https: true });
    curl(lab, 'GET', '/api/items?exit=2');
    return { run, held, exitAt };
  }

  const graceful: { path: string; act: (r: CollectorRun) => void; reason: string; signal?: string }[] = [
    { path: 'stdin EOF (SSH channel closed)', act: (r) => r.child.stdin.end(), reason: 'stdin_closed' },
    { path: 'SIGTERM', act: (r) => r.child.kill('SIGTERM'), reason: 'signal', signal: 'SIGTERM' },
    { path: 'SIGINT', act: (r) => r.child.kill('SIGINT'), reason: 'signal', signal: 'SIGINT' },
    { path: 'SIGHUP', act: (r) => r.child.kill('SIGHUP'), reason: 'signal', signal: 'SIGHUP' },
  ];
  for (const g of graceful) {
    it(`${g.path}: bye with detached: true within 3 s, nothing left`, async () => {
      const { run, held, exitAt } = await startDirect();
      const t0 = performance.now();
      g.act(run);
      const code = await run.exited;
      const stopMs = (await exitAt) - t0;
      expect(code, run.stderr).toBe(0);
      const bye = run.frames.at(-1);
      expect(bye?.type).toBe('bye');
      expect(bye?.body).toMatchObject({ reason: g.reason, detached: true, ...(g.signal ? { signal: g.signal } : {}) });
      expect(run.frames.some((f) => f.type === 'stats' && f.body['final'] === true)).toBe(true);
      expect(stopMs).toBeLessThan(3000);
      const releasedMs = await untilReleased(held, { dirMustGo: false, timeoutMs: 2000, since: t0 });
      results.push({
        path: g.path,
        stopMs: releasedMs,
        detachMs: detachMs(run.stderr),
        checked: `bye ${g.reason}, ${held.progs.length} progs, ${held.links.length} links`,
      });
    });
  }

  it('--duration expiry with stdin open and no signal: stops itself at its deadline', async () => {
    const run = track(
      startCollector(['--process', lab.LAB_NGINX_PID, '--duration', '4s', '--otlp-listen', '127.0.0.1:0']),
    );
    const exitAt = new Promise<number>((r) => run.child.on('exit', () => r(performance.now())));
    const t0 = performance.now();
    await until('hello', () => run.frames.some((f) => f.type === 'hello'));
    const held = await untilTlsAttached(run.child.pid!, () => run.stderr);
    // stdin stays open (never ended) and nothing signals the collector.
    const code = await run.exited;
    const ranMs = (await exitAt) - t0;
    expect(code, run.stderr).toBe(0);
    expect(run.frames.at(-1)?.body).toMatchObject({ reason: 'duration', detached: true });
    expect(ranMs).toBeGreaterThanOrEqual(4000);
    expect(ranMs).toBeLessThan(4000 + 3000);
    await untilReleased(held, { dirMustGo: false, timeoutMs: 2000 });
    results.push({
      path: '--duration 4s (stdin open)',
      stopMs: ranMs - 4000,
      detachMs: detachMs(run.stderr),
      checked: `bye duration after ${(ranMs / 1000).toFixed(2)} s`,
    });
  });

  it('EPIPE (the stdout reader goes away): exits by itself, nothing left', async () => {
    const { run, held, exitAt } = await startDirect();
    const t0 = performance.now();
    run.child.stdout.destroy(); // stdin stays open: only the next write can tell
    const code = await run.exited;
    const stopMs = (await exitAt) - t0;
    expect(code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/stopping \(stdout_closed\); detached \d+ BPF programs/);
    expect(run.stderr).toContain('stdout closed (EPIPE); exiting');
    // A stats frame is written every second: the EPIPE comes within one tick.
    expect(stopMs).toBeLessThan(1000 + 3000);
    const releasedMs = await untilReleased(held, { dirMustGo: false, timeoutMs: 2000, since: t0 });
    results.push({
      path: 'EPIPE (stdout reader gone)',
      stopMs: releasedMs,
      detachMs: detachMs(run.stderr),
      checked: 'exit 0',
    });
  });

  it('SIGKILL of the collector: the kernel releases everything it held', async () => {
    const { run, held } = await startDirect();
    const t0 = performance.now();
    run.child.kill('SIGKILL');
    await run.exited;
    const releasedMs = await untilReleased(held, { dirMustGo: false, timeoutMs: 5000, since: t0 });
    expect(run.frames.some((f) => f.type === 'bye')).toBe(false);
    results.push({ path: 'SIGKILL (direct)', stopMs: releasedMs, detachMs: null, checked: 'no bye (killed)' });
  });

  it('refuses a --duration over the 1h hard maximum, with what to do', async () => {
    const r = startCollector(['--duration', '2h']);
    r.child.stdin.end();
    expect(await r.exited).toBe(64);
    const err = r.frames.find((f) => f.type === 'error');
    expect(err?.body['message']).toMatch(/"2h" is longer than the 1h maximum: capture in several runs/);
    expect(r.frames.some((f) => f.type === 'span')).toBe(false);
  });

  // --- over SSH, as `tapdeck capture` runs it ------------------------------------------

  /** The lab sshd listener's pid. */
  function sshdPid(): number {
    return Number(readFileSync(join(lab.TAPDECK_LAB_DIR, 'sshd.pid'), 'utf8').trim());
  }

  function collectorsUnderSshd(): number[] {
    return descendants(sshdPid()).filter((p) => comm(p) === 'tapdeck-collect' && alive(p));
  }

  /** Spans in the capture file so far, from tapdeck's progress lines. */
  function spansSoFar(cli: CliRun): number {
    const m = [...cli.stderrSoFar().matchAll(/running: \d+ events, (\d+) spans/g)].at(-1);
    return Number(m?.[1] ?? 0);
  }

  interface SshRun {
    cli: CliRun;
    db: string;
    pid: number;
    held: Held;
    /** The collector's ancestors up to (not including) the sshd listener, nearest first. */
    chain: { pid: number; comm: string; cmdline: string }[];
    xrids: string[];
  }

  async function startOverSsh(name: string, duration = '120s'): Promise<SshRun> {
    // A collector killed by an earlier failed test may still be releasing its objects.
    await until('no collector from an earlier run', () => collectorsUnderSshd().length === 0, 10_000);
    const db = join(work, `${name}.sqlite`);
    const cli = track(
      startCli([
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
        duration,
        '--db',
        db,
      ]),
    );
    await until('the collector to run', () => /collector .* running on/.test(cli.stderrSoFar()), 30_000);
    await until('the collector process under the lab sshd', () => collectorsUnderSshd().length === 1, 5_000);
    const pid = collectorsUnderSshd()[0]!;
    const held = await untilTlsAttached(pid, () => cli.stderrSoFar()).catch((e: Error) => {
      throw new Error(`${e.message}\ntapdeck stderr:\n${cli.stderrSoFar()}`);
    });
    expect(held.exeDir).toMatch(/^\/tmp\/tapdeck\.[A-Za-z0-9]{8}$/);
    const listener = sshdPid();
    const up = ancestry(pid).slice(1);
    expect(up, 'the collector runs below the lab sshd').toContain(listener);
    const chain = up.slice(0, up.indexOf(listener)).map((p) => ({ pid: p, comm: comm(p), cmdline: cmdline(p) }));
    // Requests captured before the end must stay in the capture file, whatever the end.
    const xrids = [1, 2, 3].map((i) => `exit-${name}-${i}-${Date.now()}`);
    for (const x of xrids) curl(lab, 'GET', `/api/items?n=${x}`, { 'X-Request-ID': x }, { https: true });
    await until('the requests to reach the capture file', () => spansSoFar(cli) >= xrids.length, 10_000);
    console.log(`${name}: collector ${pid} under ${chain.map((c) => `${c.pid} ${c.cmdline}`).join(' < ')}`);
    return { cli, db, pid, held, chain, xrids };
  }

  async function finishSsh(s: SshRun, path: string, t0: number, expectState: RegExp): Promise<void> {
    let releasedMs: number;
    try {
      releasedMs = await untilReleased(s.held, { dirMustGo: true, timeoutMs: 10_000, since: t0 });
    } finally {
      const timer = setTimeout(() => s.cli.child.kill('SIGKILL'), 20_000);
      await s.cli.result;
      clearTimeout(timer);
    }
    const r = await s.cli.result;
    expect(r.stderr).toMatch(expectState);
    if (existsSync(s.db)) {
      const q = await runCli(['requests', '--db', s.db, '--json', '--limit', '1000']);
      const rows = JSON.parse(q.stdout) as StoredSpan[];
      for (const x of s.xrids)
        expect(
          rows.some((row) => row.x_request_id_0 === x && row.observation_point === 's-p'),
          `request ${x} kept`,
        ).toBe(true);
    }
    results.push({
      path,
      stopMs: releasedMs,
      detachMs: detachMs(s.cli.stderrSoFar()),
      checked: `dir ${s.held.exeDir} gone, ${s.held.progs.length} progs, ${s.held.links.length} links`,
    });
  }

  function kill(pid: number | undefined, what: string): void {
    if (!pid) throw new Error(`no ${what} process above the collector`);
    process.kill(pid, 'SIGKILL');
  }

  it('over SSH, tapdeck stopped with Ctrl-C: graceful, directory removed', async () => {
    const s = await startOverSsh('ctrl-c');
    const t0 = performance.now();
    s.cli.child.kill('SIGINT');
    await finishSsh(s, 'SSH: tapdeck SIGINT (stop)', t0, /done|stopped/);
  });

  it('over SSH, --duration expiry: directory removed', async () => {
    const s = await startOverSsh('duration', '12s');
    await s.cli.result;
    const t0 = Number.NaN; // the end is the deadline: only the detach time is known
    await finishSsh(s, 'SSH: --duration 12s', t0, /reached its duration/);
  });

  it('over SSH, SIGKILL of the collector', async () => {
    const s = await startOverSsh('kill-collector');
    const t0 = performance.now();
    kill(s.pid, 'collector');
    await finishSsh(s, 'SSH: SIGKILL collector', t0, /ended unexpectedly/);
  });

  it('over SSH, SIGKILL of sudo (the collector parent)', async () => {
    const s = await startOverSsh('kill-sudo');
    const sudo = s.chain.find((c) => c.comm === 'sudo');
    const t0 = performance.now();
    kill(sudo?.pid, 'sudo');
    await finishSsh(s, 'SSH: SIGKILL sudo', t0, /./);
  });

  it('over SSH, SIGKILL of the sh running the cleanup trap', async () => {
    const s = await startOverSsh('kill-sh');
    const sh = s.chain.find((c) => c.comm === 'sh');
    const t0 = performance.now();
    kill(sh?.pid, 'sh');
    await finishSsh(s, 'SSH: SIGKILL sh', t0, /./);
  });

  it("over SSH, SIGKILL of the session's sshd (user@notty)", async () => {
    const s = await startOverSsh('kill-sshd-session');
    const sshd = s.chain.find((c) => c.comm === 'sshd' && !c.cmdline.includes('[priv]'));
    const t0 = performance.now();
    kill(sshd?.pid, 'sshd session');
    await finishSsh(s, 'SSH: SIGKILL sshd user@notty', t0, /./);
  });

  it("over SSH, SIGKILL of the session's privileged sshd monitor: the session goes on, then ends cleanly", async () => {
    const s = await startOverSsh('kill-sshd-priv');
    const sshds = s.chain.filter((c) => c.comm === 'sshd');
    expect(sshds.at(-1)?.cmdline).toContain('[priv]');
    kill(sshds.at(-1)?.pid, 'sshd monitor');
    // OpenSSH's unprivileged session process carries the connection by itself: the
    // capture is not cut, so the collector must keep running (not be orphaned half-way)...
    const spansBefore = spansSoFar(s.cli);
    const x = `exit-after-priv-${Date.now()}`;
    curl(lab, 'GET', `/api/items?n=${x}`, { 'X-Request-ID': x }, { https: true });
    await until('spans to keep coming', () => spansSoFar(s.cli) > spansBefore, 5_000);
    expect(alive(s.pid)).toBe(true);
    s.xrids.push(x);
    await new Promise((r) => setTimeout(r, 1500));
    // ...and the usual stop still cleans up everything.
    const t0 = performance.now();
    s.cli.child.kill('SIGINT');
    await finishSsh(s, 'SSH: SIGKILL sshd [priv], then stop', t0, /done|stopped/);
  });

  it('over SSH, the TCP connection dropped (ss -K)', async () => {
    const s = await startOverSsh('ss-k');
    const cliPid = s.cli.child.pid!;
    const socks = execFileSync('ss', ['-tnpH', 'state', 'established', 'dst', `127.0.0.1:${lab.LAB_SSH_PORT}`], {
      encoding: 'utf8',
    })
      .split('\n')
      .filter((l) => l.includes(`pid=${cliPid},`));
    expect(socks, 'the tapdeck SSH connection').toHaveLength(1);
    const local = /^\S+\s+\S+\s+(\S+):(\d+)/.exec(socks[0]!)!;
    const port = local[2]!;
    const t0 = performance.now();
    // Both ends, as a middlebox reset or a dead network would.
    for (const filter of [
      `( sport = :${port} and dport = :${lab.LAB_SSH_PORT} )`,
      `( sport = :${lab.LAB_SSH_PORT} and dport = :${port} )`,
    ]) {
      const r = spawnSync('ss', ['-K', '-tn', 'state', 'established', filter], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
    }
    await finishSsh(s, 'SSH: TCP dropped (ss -K)', t0, /./);
  });

  it('over SSH, tapdeck itself SIGKILLed (the laptop side vanishes)', async () => {
    const s = await startOverSsh('kill-tapdeck');
    const t0 = performance.now();
    s.cli.child.kill('SIGKILL');
    await finishSsh(s, 'SSH: SIGKILL tapdeck', t0, /^/);
  });

  it('tapdeck capture refuses a --duration over 1h before connecting', async () => {
    const r = await runCli([
      'capture',
      '--target',
      lab.LAB_SSH_TARGET,
      '--duration',
      '2h',
      '--db',
      join(work, 'long.sqlite'),
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--duration "2h" is longer than the 1h maximum.*several runs of 1h or less/);
    expect(collectorsUnderSshd()).toEqual([]);
  });
});
