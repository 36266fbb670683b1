// Benchmark: what the collector (syscall tracing + OpenSSL uprobes) costs the lab
// gateway's HTTPS throughput. Runs the same bounded HTTPS load through nginx:443
// without the collector, with it, and without it again, and prints requests/s, the
// ratio to the DESIGN.md budget (≤ 3% drop) and the collector's CPU and memory.
// Needs root and the lab; run it under the lab lock:
//
//   flock /tmp/tapdeck-lab.lock node test/bench/tls-overhead.ts [--count N] [--concurrency C]
//
// On a shared 2-core machine the load generator, nginx and the collector compete for
// the same cores, so the drop measured here is an upper bound of what a gateway sees.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { framesOf, startCollector, until } from '../support/collector.ts';
import { labDown, labUp, runLoad, type Lab } from '../support/lab.ts';

const BUDGET_DROP = 0.03;
const { values } = parseArgs({
  options: { count: { type: 'string', default: '3000' }, concurrency: { type: 'string', default: '8' } },
});
const count = Number(values.count);
const concurrency = Number(values.concurrency);
const out = mkdtempSync(join(tmpdir(), 'td-bench-tls-'));

async function rps(lab: Lab, label: string): Promise<number> {
  const s = await runLoad(lab, {
    count,
    concurrency,
    out: join(out, `${label}.json`),
    url: lab.LAB_GW_HTTPS_URL,
    timeLimitSec: 120,
  });
  if (s.errors) throw new Error(`${label}: ${s.errors} request errors`);
  const r = (s.sent * 1000) / s.elapsed_ms;
  console.log(`${label.padEnd(16)} ${s.sent} HTTPS requests in ${s.elapsed_ms} ms: ${r.toFixed(0)} req/s`);
  return r;
}

const lab = labUp();
try {
  await rps(lab, 'warm-up');
  const before = await rps(lab, 'without');
  const run = startCollector(['--process', lab.LAB_NGINX_PID, '--duration', '300s']);
  await until('the libssl probe', () => run.stderr.includes('TLS: probing'), 15_000);
  const withCollector = await rps(lab, 'with collector');
  run.child.stdin.end();
  await run.exited;
  const after = await rps(lab, 'without again');
  const stats = framesOf(run, 'stats').find((s) => s['final'] === true)!;
  const tls = stats['tls'] as Record<string, number>;
  const spans = framesOf(run, 'span').filter((s) => s['observation_point'] === 's-p' && s['is_tls'] === true);
  const base = (before + after) / 2;
  const drop = 1 - withCollector / base;
  const cpuMs = ((stats['cpu_user_us'] as number) + (stats['cpu_sys_us'] as number)) / 1000;
  console.log(
    `throughput drop with the collector: ${(drop * 100).toFixed(1)}% ` +
      `(budget ${BUDGET_DROP * 100}%: ratio ${(drop / BUDGET_DROP).toFixed(2)}x)`,
  );
  console.log(
    `collector: ${spans.length}/${count} HTTPS requests as is_tls s-p spans, ` +
      `${tls['plaintext_records']} plaintext records, cpu ${cpuMs.toFixed(0)} ms, ` +
      `rss ${((stats['rss_bytes'] as number) / 1048576).toFixed(1)} MiB (budget 50 MiB)`,
  );
} finally {
  labDown();
}
