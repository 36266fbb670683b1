// Benchmark: packet capture (signal n) on the lab under a bounded load. Runs the same
// load.mjs load three times — no collector, collector with `--signals s`, collector
// with `--signals s,n` — and prints the load's throughput, the collector's CPU and
// peak RSS, and what packet capture handled (packets/s, N spans/s, flow records),
// with ratios to the DESIGN.md budgets (nginx throughput drop ≤ 3%, RSS ≤ 50 MB).
// Needs root and the lab; brings the lab up and down itself. Run it under the lab lock:
//
//   flock /tmp/tapdeck-lab.lock node test/bench/packets.ts [--count 4000] [--concurrency 8]
//
// On a 2-core machine the load generator, nginx, the upstreams and the collector share
// the cores, so the throughput figures are an upper bound of the real overhead.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FrameDecoder, type Frame } from '../../main/ingest/frames.ts';
import { COLLECTOR_BIN, labDown, labUp, runLoad, type Lab } from '../support/lab.ts';

const { values } = parseArgs({
  options: { count: { type: 'string', default: '4000' }, concurrency: { type: 'string', default: '8' } },
});
const COUNT = Math.min(Number(values.count), 20_000);
const CONCURRENCY = Math.min(Number(values.concurrency), 64);
const RSS_BUDGET = 50 * 1024 * 1024;
const DROP_BUDGET = 0.03;

interface Collector {
  child: ChildProcessWithoutNullStreams;
  frames: Frame[];
  exited: Promise<number | null>;
}

function startCollector(args: string[]): Collector {
  const child = spawn(COLLECTOR_BIN, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const decoder = new FrameDecoder();
  const c: Collector = { child, frames: [], exited: new Promise((r) => child.on('close', (code) => r(code))) };
  child.stdout.on('data', (d: Buffer) => c.frames.push(...decoder.push(d)));
  child.stderr.resume();
  return c;
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!cond() && Date.now() - t0 < ms) await new Promise((r) => setTimeout(r, 50));
}

interface Result {
  label: string;
  rps: number;
  cpuPct: number | null;
  rssPeakMb: number | null;
  packetsPerSec: number | null;
  nSpansPerSec: number | null;
  sSpans: number | null;
  nSpans: number | null;
  flowRecords: number | null;
  drops: Record<string, number>;
}

async function measure(lab: Lab, dir: string, label: string, signals: string | null): Promise<Result> {
  const col = signals
    ? startCollector(['--process', lab.LAB_NGINX_PID, '--signals', signals, '--duration', '10m'])
    : null;
  if (col) await waitFor(() => col.frames.some((f) => f.type === 'stats'), 10_000);
  const before = col?.frames.filter((f) => f.type === 'stats').at(-1)?.body;
  const summary = await runLoad(lab, {
    count: COUNT,
    concurrency: CONCURRENCY,
    out: join(dir, `${label}.json`),
    timeLimitSec: 300,
  });
  const rps = summary.sent / (summary.elapsed_ms / 1000);
  if (!col) {
    return {
      label,
      rps,
      cpuPct: null,
      rssPeakMb: null,
      packetsPerSec: null,
      nSpansPerSec: null,
      sSpans: null,
      nSpans: null,
      flowRecords: null,
      drops: {},
    };
  }
  await new Promise((r) => setTimeout(r, 1500)); // let the last stats frame cover the load
  col.child.stdin.end();
  await col.exited;
  const stats = col.frames.filter((f) => f.type === 'stats').map((f) => f.body);
  const last = stats.at(-1)!;
  const num = (o: Record<string, unknown> | undefined, k: string): number => Number(o?.[k] ?? 0);
  const cpuUs = (o: Record<string, unknown> | undefined) => num(o, 'cpu_user_us') + num(o, 'cpu_sys_us');
  const elapsedMs = num(last, 'elapsed_ms') - num(before, 'elapsed_ms');
  const pk = (o: Record<string, unknown> | undefined) => (o?.['packets'] ?? {}) as Record<string, number>;
  const spans = col.frames.filter((f) => f.type === 'span').map((f) => f.body);
  const drops = Object.fromEntries(
    Object.entries((last['drops'] ?? {}) as Record<string, number>).filter(([, v]) => v > 0),
  );
  return {
    label,
    rps,
    cpuPct: (100 * (cpuUs(last) - cpuUs(before))) / (elapsedMs * 1000),
    rssPeakMb: Math.max(...stats.map((s) => num(s, 'rss_bytes'))) / 1048576,
    packetsPerSec: (signals ?? '').includes('n')
      ? ((pk(last)['packets_seen'] ?? 0) - (pk(before)['packets_seen'] ?? 0)) / (summary.elapsed_ms / 1000)
      : null,
    nSpansPerSec: (signals ?? '').includes('n')
      ? spans.filter((s) => s['signal_source'] === 'packet').length / (summary.elapsed_ms / 1000)
      : null,
    sSpans: spans.filter((s) => s['signal_source'] === 'ebpf').length,
    nSpans: spans.filter((s) => s['signal_source'] === 'packet').length,
    flowRecords: col.frames.filter((f) => f.type === 'flow').length,
    drops,
  };
}

const dir = mkdtempSync(join(tmpdir(), 'td-bench-packets-'));
const lab = labUp();
try {
  const results: Result[] = [];
  results.push(await measure(lab, dir, 'baseline', null));
  results.push(await measure(lab, dir, 'signals-s', 's'));
  results.push(await measure(lab, dir, 'signals-s-n', 's,n'));
  const base = results[0]!.rps;
  console.log(`packet capture benchmark: ${COUNT} requests, concurrency ${CONCURRENCY}, per run`);
  for (const r of results) {
    const drop = 1 - r.rps / base;
    const f = (v: number | null, d = 0) => (v === null ? '-' : v.toFixed(d));
    console.log(
      `${r.label.padEnd(12)} ${r.rps.toFixed(0).padStart(6)} req/s (drop ${(drop * 100).toFixed(1)}%, ` +
        `${(drop / DROP_BUDGET).toFixed(2)}× the 3% budget)  collector cpu ${f(r.cpuPct, 1)}%  ` +
        `rss peak ${f(r.rssPeakMb, 1)} MB (${r.rssPeakMb === null ? '-' : ((r.rssPeakMb * 1048576) / RSS_BUDGET).toFixed(2)}× 50 MB)  ` +
        `packets ${f(r.packetsPerSec)}/s  N spans ${f(r.nSpansPerSec)}/s  ` +
        `S spans ${f(r.sSpans)} N spans ${f(r.nSpans)} flow records ${f(r.flowRecords)}  drops ${JSON.stringify(r.drops)}`,
    );
  }
} finally {
  labDown();
  rmSync(dir, { recursive: true, force: true });
}
