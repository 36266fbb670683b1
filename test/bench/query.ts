// Benchmark: the request log on a capture file of 10 million spans (DESIGN.md budget:
// p95 ≤ 50 ms for any filter). Runs each filter of the request log through the same
// code the app uses (`Store.querySpans` in the store worker, a RequestQuery as the
// renderer and `tapdeck requests` build it), warm (one open file, repeated), and prints
// p50 and p95 per filter, the ratio to the budget, and the `total` each returns.
//
//   node test/bench/query.ts [--spans 10000000] [--runs 9] [--source FILE]
//
// The spans are the trace-assembly bench's capture file (test/bench/trace-assembly.ts
// builds and caches it under /tmp; this bench runs it first when it is missing). It is
// copied to a file of this bench's own before it is opened, because opening migrates
// a file to this branch's schema and the trace bench of other branches must still
// read theirs.

import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { copyFileSync, renameSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { RequestQuery } from '../../main/api/contract.ts';
import { Store } from '../../main/store/store.ts';

const BUDGET_MS = 50;
const { values } = parseArgs({
  options: {
    spans: { type: 'string', default: '10000000' },
    runs: { type: 'string', default: '9' },
    source: { type: 'string' },
  },
});
const TOTAL = Number(values.spans);
const RUNS = Number(values.runs);
const SOURCE = values.source ?? join(tmpdir(), `tapdeck-bench-trace-${TOTAL}-v1.sqlite`);
const FILE = join(tmpdir(), `tapdeck-bench-query-${TOTAL}.sqlite`);
/** A filter's runs stop early once they have taken this long (the slow ones say enough in 3). */
const FILTER_BUDGET_MS = 15_000;

function spansIn(file: string): number | null {
  try {
    const db = new Database(file, { readonly: true });
    try {
      return (db.prepare(`SELECT spans FROM bench_meta`).get() as { spans: number } | undefined)?.spans ?? null;
    } finally {
      db.close();
    }
  } catch {
    return null;
  }
}

if (spansIn(FILE) !== TOTAL) {
  if (spansIn(SOURCE) !== TOTAL) {
    console.log(`no ${TOTAL}-span capture file at ${SOURCE}: building it with the trace-assembly bench`);
    execFileSync(process.execPath, ['test/bench/trace-assembly.ts', '--spans', String(TOTAL), '--runs', '1'], {
      stdio: 'inherit',
    });
  }
  const t = performance.now();
  for (const s of ['', '-wal', '-shm']) rmSync(FILE + s, { force: true });
  copyFileSync(SOURCE, `${FILE}.part`);
  renameSync(`${FILE}.part`, FILE);
  console.log(`copied ${SOURCE} to ${FILE} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
}

const tOpen = performance.now();
const store = await Store.open(FILE); // migrates to this branch's schema on first open
console.log(`opened (and migrated) ${FILE} in ${(performance.now() - tOpen).toFixed(0)} ms`);

// Values from the generator (trace-assembly.ts): requests every 1 ms from T0, each seen
// three times (gateway s-p and c-p, upstream s-p), one in ten also as an OTel span;
// routes cycle GET /api/items 200, POST /api/orders 201, GET /api/users 200 and 404,
// PUT /api/users 200, GET /api/inventory 502; only the 1,000-span trace reaches svcb.
const T0 = Date.UTC(2026, 10, 21, 6, 0, 0) * 1000;
const mid = T0 + Math.floor(TOTAL / 3 / 2) * 1000;
const first = await store.querySpans({ limit: 1 });
const midPage = await store.querySpans({ fromUs: mid, toUs: mid + 1000, limit: 1 });
const midId = midPage.rows[0]?.id ?? first.rows[0]!.id;

const FILTERS: [string, RequestQuery][] = [
  ['none (newest page)', {}],
  ['method PUT (1 in 6)', { method: 'PUT' }],
  ['method DELETE (none)', { method: 'DELETE' }],
  ['path contains /api/orders/ (1 in 6)', { path: '/api/orders/' }],
  ['path contains /api/items/4998?page=3 (rare)', { path: '/api/items/4998?page=3' }],
  ['domain api.shop.example (1 in 3)', { domain: 'api.shop.example' }],
  ['domain svcb (~500 spans, mid-file)', { domain: 'svcb' }],
  ['status server_error (1 in 6)', { status: 'server_error' }],
  ['code 400-499 (1 in 6)', { minCode: 400, maxCode: 499 }],
  ['X-Request-ID of the big trace', { xRequestId: 'bench-trace-0000000000000000000001' }],
  ['X-Request-ID absent', { xRequestId: 'no-such-request-id' }],
  ['min duration 6,990 us (0.1%)', { minDurationUs: 6990 }],
  ['time window: 1 min mid-file', { fromUs: mid, toUs: mid + 60_000_000 }],
  ['time window + GET + client_error', { fromUs: mid, toUs: mid + 60_000_000, method: 'GET', status: 'client_error' }],
  ['GET + client_error + api.shop.example', { method: 'GET', status: 'client_error', domain: 'api.shop.example' }],
  ['observation point c-p', { observationPoints: ['c-p'] }],
  ['capture 1 (the only one)', { captureId: 1 }],
  ['paging: beforeId mid-file', { beforeId: midId }],
  ['paging: beforeId mid-file + status server_error', { beforeId: midId, status: 'server_error' }],
];

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!;
};
console.log(
  `request log on ${TOTAL.toLocaleString('en-US')} spans, ${RUNS} runs per filter (fewer when a filter takes over ${FILTER_BUDGET_MS / 1000} s); ` +
    `load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} on ${cpus().length} CPUs`,
);
console.log(
  `${'filter'.padEnd(50)} ${'p50 ms'.padStart(8)} ${'p95 ms'.padStart(8)} ${'ratio'.padStart(7)} ${'runs'.padStart(4)} ${'rows'.padStart(5)} total`,
);
const p95s: number[] = [];
const cpu0 = process.cpuUsage();
const wall0 = performance.now();
for (const [name, q] of FILTERS) {
  const times: number[] = [];
  let total = '';
  let rows = 0;
  const start = performance.now();
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    const page = await store.querySpans(q);
    times.push(performance.now() - t);
    rows = page.rows.length;
    total = `${page.total.toLocaleString('en-US')}${page.totalCapped ? '+' : ''}`;
    if (performance.now() - start > FILTER_BUDGET_MS && i >= 2) break;
  }
  const p95 = pct(times, 0.95);
  p95s.push(p95);
  console.log(
    `${name.padEnd(50)} ${pct(times, 0.5).toFixed(1).padStart(8)} ${p95.toFixed(1).padStart(8)} ${(p95 / BUDGET_MS).toFixed(2).padStart(6)}x ${String(times.length).padStart(4)} ${String(rows).padStart(5)} ${total}`,
  );
}
const cpu = process.cpuUsage(cpu0);
const over = p95s.filter((p) => p > BUDGET_MS).length;
console.log(
  `worst p95 ${Math.max(...p95s).toFixed(1)} ms (${(Math.max(...p95s) / BUDGET_MS).toFixed(2)}x the ${BUDGET_MS} ms budget); ` +
    `${over} of ${FILTERS.length} filters over budget; CPU ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s in ${((performance.now() - wall0) / 1000).toFixed(1)} s wall`,
);
await store.close();
