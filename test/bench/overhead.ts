// Benchmark: the collector's overhead on the lab gateway. wrk, in the client namespace,
// drives the gateway nginx (proxying to svca, as Kong/APISIX would) at saturation for a
// fixed time, with the collector off, with S capture (`--signals s`, its default
// budget), with S capture and no budget (`--max-cpu 1000 --max-rss 65536`: the raw cost)
// and with S+N capture (`--signals s,n`). Configurations alternate within each round so
// drift on this shared machine hits them alike. The collector runs directly (not over
// SSH) on the nginx processes, as root. Prints req/s, the ratio to "off", the collector's
// CPU (its own, and with --bpf-stats its BPF programs' time from kernel.bpf_stats_enabled),
// its peak RSS, spans/s and its sampling rate, and the ratios to the DESIGN.md budgets
// (throughput drop <= 3 % with S+N on; collector <= 50 MB RSS), also as estimated from
// the CPU the lab spends per request (see measuredLoad). Not a pass/fail test.
//
//   flock /tmp/tapdeck-lab.lock node test/bench/overhead.ts [--seconds 10] [--rounds 3]
//        [--connections 32] [--configs off,s,s-unbudgeted,s+n] [--collector PATH] [--bpf-stats]
//
// `npm run bench:overhead` does exactly that. Needs root, the lab (brought up and torn
// down here), wrk and a release collector build.

import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FrameDecoder, type Frame } from '../../main/ingest/frames.ts';
import { COLLECTOR_BIN, labDown, labUp, type Lab } from '../support/lab.ts';

const BUDGET_DROP = 0.03;
const BUDGET_RSS = 50 * 1024 * 1024;

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    configs: { type: 'string', default: 'off,s,s-unbudgeted,s+n' },
    collector: { type: 'string', default: COLLECTOR_BIN },
    path: { type: 'string', default: '/api/bench' },
    'bpf-stats': { type: 'boolean', default: false },
  },
});
const SECONDS = Math.min(Math.max(Number(values.seconds), 1), 60);
const ROUNDS = Math.min(Math.max(Number(values.rounds), 1), 10);
const CONNS = Math.min(Math.max(Number(values.connections), 1), 256);
const BIN = values.collector;

interface Config {
  name: string;
  label: string;
  args: string[] | null; // null: collector off
}
const ALL: Config[] = [
  { name: 'off', label: 'collector off', args: null },
  { name: 's', label: 'S (--signals s)', args: ['--signals', 's'] },
  {
    name: 's-unbudgeted',
    label: 'S, no budget',
    args: ['--signals', 's', '--max-cpu', '1000', '--max-rss', '65536'],
  },
  { name: 's+n', label: 'S+N (--signals s,n)', args: ['--signals', 's,n'] },
];

interface Sample {
  rps: number;
  cpuPerReqUs: number;
  cpuPct?: number;
  bpfCpuPct?: number;
  rssMax?: number;
  spansPerSec?: number;
  sampleRate?: number;
  drops?: number;
  dropReasons?: Record<string, number>;
}

function fail(msg: string): never {
  process.stderr.write(`bench:overhead: ${msg}\n`);
  process.exit(1);
}

// CPU time of the processes that serve the load, from /proc (clock ticks): on this
// shared machine req/s swings by tens of percent with the other jobs, while the CPU
// the lab spends per request does not. At saturation on a CPU-bound box, throughput
// is inversely proportional to it, so 1 - (CPU/request off) / (CPU/request on) is the
// throughput drop the collector causes. The nginx workers' time includes the BPF
// programs and the syscall-tracing path; wrk's and svca's include that path too.
const TICK_US = 1_000_000 / 100; // USER_HZ

function procTicks(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
  } catch {
    return 0;
  }
}

/** Ticks of reaped children of this process (wrk, once it has exited). */
function childTicks(): number {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return Number(f[13]) + Number(f[14]); // cutime, cstime (fields 16, 17)
}

/** nginx's master and workers, and svca. */
function labPids(lab: Lab): number[] {
  const master = Number(lab.LAB_NGINX_PID);
  const pids = [master];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const ppid = Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
      if (ppid === master) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  const svca = Number(readFileSync(join(process.env['TAPDECK_LAB_DIR'] ?? '/tmp/tapdeck-lab', 'svca.pid'), 'utf8'));
  if (svca > 0) pids.push(svca);
  return pids;
}

interface Load {
  rps: number;
  requests: number;
  /** CPU of nginx, svca, wrk (and the collector, when given) per request, microseconds. */
  cpuPerReqUs: number;
}

/** wrk at saturation, with the CPU the lab spent on it. */
async function measuredLoad(lab: Lab, collectorPid?: number): Promise<Load> {
  const pids = labPids(lab);
  if (collectorPid) pids.push(collectorPid);
  const ticks = () => pids.reduce((a, p) => a + procTicks(p), 0) + childTicks();
  const t0 = ticks();
  const { rps, requests } = await wrk(lab);
  const cpuUs = (ticks() - t0) * TICK_US;
  return { rps, requests, cpuPerReqUs: cpuUs / Math.max(requests, 1) };
}

/** wrk at saturation; asynchronous, so the collector's stdout keeps being read meanwhile. */
function wrk(lab: Lab): Promise<{ rps: number; requests: number }> {
  const url = `${lab.LAB_GW_URL}${values.path}`;
  return new Promise((resolve) => {
    const child = spawn(
      'ip',
      ['netns', 'exec', lab.LAB_CLIENT_NS, 'wrk', '-t2', `-c${CONNS}`, `-d${SECONDS}s`, '--timeout', '5s', url],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), (SECONDS + 30) * 1000);
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) fail(`wrk failed (exit ${code}): ${err || out}`);
      const m = /Requests\/sec:\s*([\d.]+)/.exec(out);
      if (!m) fail(`cannot read Requests/sec from wrk's output:\n${out}`);
      const non2xx = /Non-2xx or 3xx responses:\s*(\d+)/.exec(out);
      if (non2xx) process.stderr.write(`bench:overhead: warning: ${non2xx[1]} non-2xx answers during a run\n`);
      const total = /(\d+) requests in/.exec(out);
      resolve({ rps: Number(m[1]), requests: Number(total?.[1] ?? 0) });
    });
  });
}

interface BpfProg {
  id: number;
  name?: string;
  run_time_ns?: number;
}

function bpfProgs(): BpfProg[] {
  const r = spawnSync('bpftool', ['prog', 'show', '--json'], { encoding: 'utf8' });
  return r.status === 0 ? (JSON.parse(r.stdout) as BpfProg[]) : [];
}

/** Total run_time_ns of the programs `ids` (needs kernel.bpf_stats_enabled=1). */
function bpfRunTimeNs(ids: Set<number>): number {
  return bpfProgs()
    .filter((p) => ids.has(p.id))
    .reduce((a, p) => a + (p.run_time_ns ?? 0), 0);
}

interface Collector {
  child: ChildProcessWithoutNullStreams;
  frames: Frame[];
  stderr: string;
  exited: Promise<number | null>;
}

function startCollector(lab: Lab, args: string[]): Collector {
  const child = spawn(BIN, ['--process', lab.LAB_NGINX_PID, '--duration', `${SECONDS + 60}s`, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const dec = new FrameDecoder();
  const c: Collector = {
    child,
    frames: [],
    stderr: '',
    exited: new Promise((res) => child.on('close', (code) => res(code))),
  };
  child.stdout.on('data', (d: Buffer) => c.frames.push(...dec.push(d)));
  child.stderr.on('data', (d: Buffer) => (c.stderr += d.toString()));
  return c;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const num = (v: unknown) => (typeof v === 'number' ? v : 0);
const stats = (c: Collector) => c.frames.filter((f) => f.type === 'stats').map((f) => f.body);
const dropsOf = (s: Record<string, unknown>) =>
  Object.values((s['drops'] ?? {}) as Record<string, number>).reduce((a, b) => a + num(b), 0);

/** One run of one configuration; null when the collector refused it (the sentence is printed). */
async function run(lab: Lab, cfg: Config): Promise<Sample | null> {
  if (!cfg.args) {
    const l = await measuredLoad(lab);
    return { rps: l.rps, cpuPerReqUs: l.cpuPerReqUs };
  }
  // This bpftool lists no owning pids: the collector's programs are the ones that
  // appear once it has started.
  const idsBefore = new Set(bpfProgs().map((p) => p.id));
  const c = startCollector(lab, cfg.args);
  const t0 = Date.now();
  while (!c.frames.some((f) => f.type === 'stats' || f.type === 'error') && Date.now() - t0 < 15_000) {
    await sleep(50);
    if (c.child.exitCode !== null) break;
  }
  const err = c.frames.find((f) => f.type === 'error');
  if (err || c.child.exitCode !== null) {
    c.child.stdin.end();
    await c.exited;
    const why = err ? String(err.body['message']) : c.stderr.trim();
    process.stderr.write(`bench:overhead: ${cfg.label} not measured: the collector said: ${why}\n`);
    return null;
  }
  const ours = new Set(
    bpfProgs()
      .filter((p) => !idsBefore.has(p.id) && /^r?tp_/.test(p.name ?? ''))
      .map((p) => p.id),
  );
  const before = stats(c).at(-1)!;
  const bpf0 = bpfRunTimeNs(ours);
  const w0 = process.hrtime.bigint();
  const { rps, cpuPerReqUs } = await measuredLoad(lab, c.child.pid);
  const wallNs = Number(process.hrtime.bigint() - w0);
  const bpf1 = bpfRunTimeNs(ours);
  // The next stats frame covers the end of the load.
  const n = stats(c).length;
  const t1 = Date.now();
  while (stats(c).length === n && Date.now() - t1 < 3000) await sleep(50);
  const after = stats(c).at(-1)!;
  const during = stats(c).filter((s) => num(s['elapsed_ms']) >= num(before['elapsed_ms']));
  c.child.stdin.end();
  const code = await c.exited;
  if (code !== 0) fail(`the collector exited ${code}: ${c.stderr}`);
  const dMs = num(after['elapsed_ms']) - num(before['elapsed_ms']);
  const cpuUs =
    num(after['cpu_user_us']) + num(after['cpu_sys_us']) - num(before['cpu_user_us']) - num(before['cpu_sys_us']);
  const rates = during.map((s) => num((s['budget'] as Record<string, unknown> | undefined)?.['sample_rate'] ?? 1));
  return {
    rps,
    cpuPerReqUs,
    cpuPct: (cpuUs / (dMs * 1000)) * 100,
    bpfCpuPct: values['bpf-stats'] ? ((bpf1 - bpf0) / wallNs) * 100 : undefined,
    rssMax: Math.max(...stats(c).map((s) => num(s['rss_bytes']))),
    spansPerSec: ((num(after['spans_sent']) - num(before['spans_sent'])) * 1000) / dMs,
    sampleRate: rates.reduce((a, b) => a + b, 0) / Math.max(rates.length, 1),
    drops: dropsOf(after) - dropsOf(before),
    dropReasons: Object.fromEntries(
      Object.entries((after['drops'] ?? {}) as Record<string, number>)
        .map(([k, v]) => [k, v - num(((before['drops'] ?? {}) as Record<string, number>)[k])] as const)
        .filter(([, v]) => v > 0),
    ),
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2) : NaN;
};
const f1 = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(1));

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) fail('run me as root: the lab and eBPF need it.');
  if (!existsSync(BIN)) fail(`${BIN} is missing: run npm run build:collector.`);
  if (spawnSync('wrk', ['--version']).error) fail('wrk is missing: run scripts/bootstrap (apt-get install wrk).');
  const configs = values.configs
    .split(',')
    .map((n) => ALL.find((c) => c.name === n.trim()) ?? fail(`unknown config ${n}`));

  // BPF run-time statistics cost two clock reads per program run, which is itself a
  // visible overhead on a VM: only with --bpf-stats.
  const statsSysctl = '/proc/sys/kernel/bpf_stats_enabled';
  const statsWas = readFileSync(statsSysctl, 'utf8').trim();
  if (values['bpf-stats']) writeFileSync(statsSysctl, '1');
  const lab = labUp();
  const results = new Map<string, Sample[]>();
  const refused = new Set<string>();
  try {
    process.stdout.write(
      `bench:overhead: ${ROUNDS} round(s) x ${configs.length} configs x ${SECONDS} s, wrk -t2 -c${CONNS} ${lab.LAB_GW_URL}${values.path}\n`,
    );
    await wrk(lab); // warm-up: keep-alive pools, JIT of the upstream
    for (let round = 1; round <= ROUNDS; round++) {
      for (const cfg of configs) {
        if (refused.has(cfg.name)) continue;
        const s = await run(lab, cfg);
        if (!s) {
          refused.add(cfg.name);
          continue;
        }
        results.set(cfg.name, [...(results.get(cfg.name) ?? []), s]);
        process.stdout.write(
          `  round ${round} ${cfg.label.padEnd(22)} ${s.rps.toFixed(0).padStart(7)} req/s  ${s.cpuPerReqUs.toFixed(0).padStart(4)} us cpu/req` +
            (s.cpuPct !== undefined
              ? `  cpu ${f1(s.cpuPct)}%  bpf ${s.bpfCpuPct === undefined ? '-' : `${f1(s.bpfCpuPct)}%`}  rss ${f1((s.rssMax ?? 0) / 1048576)} MB  ${s.spansPerSec?.toFixed(0)} spans/s  sampled ${f1((s.sampleRate ?? 1) * 100)}%  drops ${s.drops} ${JSON.stringify(s.dropReasons)}`
              : '') +
            '\n',
        );
      }
    }
  } finally {
    labDown();
    writeFileSync(statsSysctl, statsWas);
  }

  const offs = results.get('off') ?? [];
  const off = median(offs.map((s) => s.rps));
  const offCpr = median(offs.map((s) => s.cpuPerReqUs));
  const spread = (xs: number[]) => `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}`;
  process.stdout.write(
    `\nmedians of ${ROUNDS} run(s) (req/s range in brackets); CPU in % of one core; "bpf" is the BPF ` +
      `programs' time inside nginx; "cpu/req" is what nginx, svca, wrk and the collector spent per request\n`,
  );
  process.stdout.write(
    'config                   req/s (range)        vs off   cpu/req  vs off   collector cpu   bpf cpu   rss max   spans/s   sampled\n',
  );
  for (const cfg of configs) {
    const xs = results.get(cfg.name);
    if (!xs) {
      process.stdout.write(`${cfg.label.padEnd(22)} not measured (the collector refused it; see above)\n`);
      continue;
    }
    const rps = median(xs.map((s) => s.rps));
    const cpr = median(xs.map((s) => s.cpuPerReqUs));
    const on = cfg.args !== null;
    const cols = [
      cfg.label.padEnd(22),
      `${rps.toFixed(0).padStart(7)} (${spread(xs.map((s) => s.rps))})`.padEnd(20),
      `${(((rps - off) / off) * 100).toFixed(1)}%`.padStart(7),
      `${cpr.toFixed(0)} us`.padStart(8),
      `${(((cpr - offCpr) / offCpr) * 100).toFixed(1)}%`.padStart(7),
    ];
    if (on)
      cols.push(
        `${f1(median(xs.map((s) => s.cpuPct!)))}%`.padStart(14),
        (values['bpf-stats'] ? `${f1(median(xs.map((s) => s.bpfCpuPct!)))}%` : '-').padStart(8),
        `${f1(Math.max(...xs.map((s) => s.rssMax!)) / 1048576)} MB`.padStart(9),
        median(xs.map((s) => s.spansPerSec!))
          .toFixed(0)
          .padStart(9),
        `${f1(median(xs.map((s) => s.sampleRate! * 100)))}%`.padStart(9),
      );
    process.stdout.write(cols.join(' ') + '\n');
  }
  process.stdout.write(
    '\nagainst DESIGN.md budgets (ratio = measured / budget; <= 1.00 is within budget). "est." is the drop\n' +
      'implied by CPU per request (1 - off/on), which this shared machine measures far more steadily than req/s.\n',
  );
  for (const name of ['s+n', 's', 's-unbudgeted']) {
    const xs = results.get(name);
    const cfg = ALL.find((c) => c.name === name)!;
    if (!configs.includes(cfg)) continue;
    if (!xs) {
      process.stdout.write(`  ${cfg.label}: not measured\n`);
      continue;
    }
    const drop = Math.max(0, (off - median(xs.map((s) => s.rps))) / off);
    const est = Math.max(0, 1 - offCpr / median(xs.map((s) => s.cpuPerReqUs)));
    const rss = Math.max(...xs.map((s) => s.rssMax!));
    process.stdout.write(
      `  ${cfg.label.padEnd(22)} throughput drop ${(drop * 100).toFixed(1)}% / 3% = ${(drop / BUDGET_DROP).toFixed(2)}` +
        `   est. ${(est * 100).toFixed(1)}% / 3% = ${(est / BUDGET_DROP).toFixed(2)}` +
        `   rss ${(rss / 1048576).toFixed(1)} MB / 50 MB = ${(rss / BUDGET_RSS).toFixed(2)}` +
        (name === 's+n' ? '' : '   (the budget is stated for S+N)') +
        '\n',
    );
  }
  if (!results.has('s+n') && configs.some((c) => c.name === 's+n'))
    process.stdout.write('  S+N was not measured: this collector build does not accept --signals s,n yet.\n');
}

await main();
