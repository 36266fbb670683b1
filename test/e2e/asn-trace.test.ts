// The A/S/N trace end to end, in the lab (issue 4's last test): `tapdeck capture
// --signals s,n,a --otlp-listen` on the gateway's nginx and both Node upstreams (svca
// runs the OpenTelemetry JS SDK and exports to the collector's receiver on the
// bridge), requests client → gateway → svca → svcb, then, for an X-Request-ID from
// nginx's access log, `tapdeck trace --json` read the way a person reads the tree:
//
//   gateway s-p → gateway c-p → N spans of that hop, client side to server side →
//   svca s-p → s-app (svca's OTel server span) → c-app (its call to svcb) →
//   svca c-p (carrying c-app's span id) → N spans of the svca → svcb hop → svcb s-p
//
// with every child inside its parent in time (1 ms, as in trace.test.ts), self times
// that add up, one X-Request-ID and, where the spans carry one, one trace id.
// Then the same trace in web mode (headless Chromium): opened from the request log,
// with A, S and N bars and their tooltips. nginx stands in for Kong/APISIX (not
// installable here), configured the way they proxy (X-Request-ID injected, no
// traceparent).

import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Trace, TraceNode } from '../../main/api/trace.ts';
import { APP_ROOT } from '../../main/paths.ts';
import { layoutTrace, type Bar } from '../../app/src/trace/model.ts';
import { AXIS_HEIGHT, ROW_HEIGHT } from '../../app/src/trace/time-chart.ts';
import { launchChromium } from '../support/browser.ts';
import { runCli, startCli } from '../support/cli.ts';
import { waitForSpans } from '../support/capture-db.ts';
import { until } from '../support/collector-run.ts';
import { curl, isRoot, LAB_OTLP_LISTEN, labDown, labUp, readAccessLog, type Lab } from '../support/lab.ts';

const work = mkdtempSync(join(tmpdir(), 'td-e2e-asn-'));
const ARTIFACTS = join(APP_ROOT, 'test', 'artifacts');
/** Children may stick out of their parent by this much (see trace.test.ts). */
const TOL_US = 1000;

interface Row {
  node: TraceNode;
  parent: TraceNode | null;
}

function walk(t: Trace): Row[] {
  const out: Row[] = [];
  const go = (n: TraceNode, parent: TraceNode | null): void => {
    out.push({ node: n, parent });
    for (const c of n.children) go(c, n);
  };
  for (const r of t.roots) go(r, null);
  return out;
}

/** One line per span, indented by depth: what the test prints for a person to read. */
function outline(t: Trace): string {
  return walk(t)
    .map(({ node: n }) => {
      const s = n.span;
      const where =
        n.kind === 'N'
          ? `${s.interface ?? '?'} netns ${s.netns ?? '?'}`
          : n.kind === 'A'
            ? `${s.app_service ?? '?'} span ${s.span_id ?? '?'} parent ${s.parent_span_id ?? '-'}`
            : `${s.process_name ?? '?'} pid ${s.pid ?? '?'}${s.span_id ? ` span ${s.span_id}` : ''}`;
      const dur = n.renderEndUs - n.renderStartUs;
      return `${'  '.repeat(n.depth)}${n.kind} ${s.observation_point} ${where} · ${s.server_ip ?? ''}:${s.server_port ?? ''} · ${dur} µs (self ${n.selfTimeUs})`;
    })
    .join('\n');
}

interface Pids {
  nginx: number[];
  svca: number;
  svcb: number;
}

/** The chain a person expects, from the root down, one step per S or A span. */
function asnProblems(t: Trace, path: string, xrid: string, pids: Pids): string[] {
  const problems: string[] = [];
  const rows = walk(t);
  if (t.roots.length !== 1) problems.push(`${t.roots.length} roots (expected 1)`);
  const root = t.roots[0];
  if (!root) return ['no root'];

  // 1. The spine: S and A spans, each the nearest S/A descendant of the previous one.
  const isS = (n: TraceNode, op: string, pid: number | 'nginx'): boolean =>
    n.kind === 'S' &&
    n.span.observation_point === op &&
    (pid === 'nginx' ? pids.nginx.includes(n.span.pid ?? -1) : n.span.pid === pid);
  const isA = (n: TraceNode, op: string): boolean =>
    n.kind === 'A' && n.span.observation_point === op && n.span.app_service === 'svca';
  const spine: [string, (n: TraceNode) => boolean][] = [
    ['gateway s-p', (n) => isS(n, 's-p', 'nginx')],
    ['gateway c-p', (n) => isS(n, 'c-p', 'nginx')],
    ['svca s-p', (n) => isS(n, 's-p', pids.svca)],
    ['svca s-app', (n) => isA(n, 's-app')],
    ['svca c-app', (n) => isA(n, 'c-app')],
    ['svca c-p', (n) => isS(n, 'c-p', pids.svca)],
    ['svcb s-p', (n) => isS(n, 's-p', pids.svcb)],
  ];
  const found: TraceNode[] = [];
  for (const [name, match] of spine) {
    const all = rows.filter((r) => match(r.node));
    if (all.length !== 1) {
      problems.push(`${all.length} × ${name} (expected 1)`);
      return problems;
    }
    found.push(all[0]!.node);
  }
  const sa = rows.filter((r) => r.node.kind !== 'N');
  if (sa.length !== spine.length) problems.push(`${sa.length} S and A spans (expected ${spine.length})`);
  if (found[0]!.span.request_resource !== path)
    problems.push(`the gateway s-p is for ${found[0]!.span.request_resource}`);

  const parentOf = new Map(rows.map((r) => [r.node, r.parent]));
  /** The path from `from` (exclusive) up to `to` (exclusive), or null when `to` is no ancestor. */
  const between = (from: TraceNode, to: TraceNode): TraceNode[] | null => {
    const out: TraceNode[] = [];
    for (let p = parentOf.get(from) ?? null; p !== null; p = parentOf.get(p) ?? null) {
      if (p === to) return out.reverse();
      out.push(p);
    }
    return null;
  };
  // The client is not traced: the root is the client → gateway exchange seen on the
  // wire (its N spans, client side first), with the gateway's s-p at its end.
  const above: TraceNode[] = [];
  for (let p = parentOf.get(found[0]!) ?? null; p !== null; p = parentOf.get(p) ?? null) above.unshift(p);
  if (above.some((n) => n.kind !== 'N' || n.span.server_port !== 80))
    problems.push(`above the gateway s-p: ${above.map((n) => `${n.kind} ${n.span.observation_point}`).join(' → ')}`);
  const hops: TraceNode[][] = [above];
  for (let i = 1; i < spine.length; i++) {
    const mid = between(found[i]!, found[i - 1]!);
    if (mid === null) {
      problems.push(`${spine[i]![0]} is not under ${spine[i - 1]![0]}`);
      continue;
    }
    if (mid.some((n) => n.kind !== 'N'))
      problems.push(`between ${spine[i - 1]![0]} and ${spine[i]![0]}: ${mid.map((n) => n.kind).join(' ')}`);
    // network spans only between a client process span and the next server process span
    if (spine[i - 1]![0].endsWith('c-p') && spine[i]![0].endsWith('s-p')) hops.push(mid);
    else if (mid.length > 0) problems.push(`${mid.length} N spans between ${spine[i - 1]![0]} and ${spine[i]![0]}`);
  }
  // A spans by span ids; svca's call carries c-app's span id on the wire.
  const [, , , sApp, cApp, svcaC] = found as [TraceNode, TraceNode, TraceNode, TraceNode, TraceNode, TraceNode];
  if (cApp.span.parent_span_id !== sApp.span.span_id) problems.push('c-app’s parent_span_id is not s-app’s span id');
  if (svcaC.span.span_id !== cApp.span.span_id) problems.push('svca’s c-p does not carry c-app’s span id');

  // 2. N spans of each hop, client side to server side: every lab namespace is joined
  //    to the bridge by a veth pair (eth0 inside, tdv-NAME on the host), so a hop is
  //    seen leaving the client's eth0 (c), on the client's host-side veth (c), on the
  //    server's host-side veth (s), arriving at the server's eth0 (s). The bridge
  //    itself forwards the frames without a span of its own.
  const LAB_HOPS = [
    ['client', 'gw'],
    ['gw', 'svca'],
    ['svca', 'svcb'],
  ];
  for (const [i, hop] of hops.entries()) {
    const [from, to] = LAB_HOPS[i]!;
    const seen = hop.map((n) => `${n.span.observation_point} ${n.span.interface}`).join(' → ');
    const want = `c eth0 → c tdv-${from} → s tdv-${to} → s eth0`;
    if (seen !== want) problems.push(`N spans of ${from} → ${to}: ${seen || 'none'} (expected ${want})`);
    else if (hop[0]!.span.netns === hop[3]!.span.netns) problems.push(`${from} and ${to}: both eth0 in one netns`);
  }

  // 3. Time: children inside parents; self times; ids.
  for (const { node, parent } of rows) {
    if (node.selfTimeUs < 0) problems.push(`span ${node.span.id} has a negative self time`);
    if (node.selfTimeUs > node.renderEndUs - node.renderStartUs)
      problems.push(`span ${node.span.id}: self time longer than the span`);
    // An A span's end may trail its S parent's: the S span ends at the response's first
    // byte, the SDK's server span once the whole response is handed over (measured and
    // printed below, not bounded).
    const endTol = node.kind === 'A' && parent?.kind === 'S' ? Infinity : TOL_US;
    if (
      parent &&
      (node.renderStartUs < parent.renderStartUs - TOL_US || node.renderEndUs > parent.renderEndUs + endTol)
    )
      problems.push(
        `${node.kind} ${node.span.observation_point} #${node.span.id} [${node.renderStartUs}, ${node.renderEndUs}] is not inside ` +
          `its parent ${parent.kind} ${parent.span.observation_point} #${parent.span.id} [${parent.renderStartUs}, ${parent.renderEndUs}]`,
      );
  }
  // Self times: each child's time clipped to its parent is not the parent's own, so the
  // self times add up to the root's duration plus what children stick out of parents.
  let self = 0;
  let outside = 0;
  for (const { node, parent } of rows) {
    self += node.selfTimeUs;
    if (parent)
      outside +=
        Math.max(0, parent.renderStartUs - node.renderStartUs) + Math.max(0, node.renderEndUs - parent.renderEndUs);
  }
  const rootDur = root.renderEndUs - root.renderStartUs;
  if (self < rootDur || self > rootDur + outside)
    problems.push(`self times add up to ${self} µs, root ${rootDur} µs, ${outside} µs outside parents`);
  const xrids = new Set(rows.flatMap((r) => [r.node.span.x_request_id_0, r.node.span.x_request_id_1]));
  xrids.delete(null);
  if (xrids.size !== 1 || !xrids.has(xrid)) problems.push(`X-Request-IDs: ${[...xrids].join(', ')}`);
  // svca's OTel SDK starts a trace (nginx sends no traceparent): every span from s-app
  // down carries that trace id; the gateway's spans carry none.
  const traceIds = new Set(rows.map((r) => r.node.span.trace_id));
  traceIds.delete(null);
  if (traceIds.size !== 1) problems.push(`trace ids: ${[...traceIds].join(', ')}`);
  return problems;
}

/** How far svca's s-app span ends after the s-p span around it, µs. */
function aTrail(t: Trace): number {
  const r = walk(t).find((x) => x.node.kind === 'A' && x.parent?.kind === 'S');
  return r ? r.node.renderEndUs - r.parent!.renderEndUs : NaN;
}

function counts(t: Trace): string {
  const by = new Map<string, number>();
  for (const { node } of walk(t)) {
    const k = `${node.kind} ${node.span.observation_point}`;
    by.set(k, (by.get(k) ?? 0) + 1);
  }
  return [...by].map(([k, v]) => `${k} ×${v}`).join(', ');
}

describe.skipIf(!isRoot)('A/S/N trace in the lab (capture --signals s,n,a)', () => {
  let lab: Lab;
  let db: string;
  let pids: Pids;
  const sent: { path: string; id: string }[] = [];

  beforeAll(async () => {
    lab = labUp();
    mkdirSync(ARTIFACTS, { recursive: true });
    pids = {
      nginx: [
        Number(lab.LAB_NGINX_PID),
        ...lab.LAB_NGINX_WORKER_PIDS.split(/[\s,]+/)
          .filter(Boolean)
          .map(Number),
      ],
      svca: Number(lab.LAB_SVCA_PID),
      svcb: Number(lab.LAB_SVCB_PID),
    };
    db = join(work, 'asn.sqlite');
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
      '--process',
      lab.LAB_SVCA_PID,
      '--process',
      lab.LAB_SVCB_PID,
      '--signals',
      's,n,a',
      '--otlp-listen',
      LAB_OTLP_LISTEN,
      '--duration',
      '90s',
      '--db',
      db,
    ]);
    await until('the collector to run', () => /collector .* running on/.test(cap.stderrSoFar()), 30_000);
    await until('the OTLP receiver', () =>
      /OTLP\/HTTP receiver on http:\/\/198\.18\.0\.1:4318/.test(cap.stderrSoFar()),
    );
    await new Promise((r) => setTimeout(r, 500));
    for (let i = 0; i < 6; i++) {
      const path = `/chain/asn/${i}?q=${i}`;
      // half with an X-Request-ID from the client, half with the one nginx makes
      const r = curl(lab, 'GET', path, i % 2 ? { 'X-Request-ID': `asn-${Date.now()}-${i}` } : {});
      expect(r.status).toBe(200);
      sent.push({ path, id: r.xRequestId! });
    }
    // Every request's s-app and c-app span, however long the SDK's exporter takes.
    await waitForSpans(db, "signal_source = 'otel'", 2 * sent.length);
    cap.child.kill('SIGINT');
    const r = await cap.result;
    expect(r.code, r.stderr).toBe(0);
  }, 120_000);
  afterAll(() => labDown());

  it('assembles gateway → N → svca → A → N → svcb in order, nested in time', async () => {
    const log = readAccessLog(lab);
    const fromLog = sent.filter((q) => log.some((l) => l.req_id === q.id && l.request_uri === q.path));
    expect(fromLog).toHaveLength(sent.length);
    const problems: string[] = [];
    for (const [i, q] of fromLog.entries()) {
      const r = await runCli(['trace', '--db', db, '--request-id', q.id, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const t = JSON.parse(r.stdout) as Trace;
      if (i === 0) console.log(`trace of ${q.id} (${t.spanCount} spans):\n${outline(t)}`);
      console.log(
        `${q.id}: ${t.spanCount} spans: ${counts(t)}; ${((t.endUs - t.startUs) / 1000).toFixed(1)} ms; s-app ends ${aTrail(t)} µs after svca's s-p`,
      );
      const p = asnProblems(t, q.path, q.id, pids);
      if (p.length > 0) {
        console.log(outline(t));
        problems.push(`${q.id}: ${p.join('; ')}`);
      }
      expect(t.truncated).toBe(false);
    }
    expect(problems).toEqual([]);
  });

  it('opens the trace from the gateway’s row in web mode, with A, S and N bars and their tooltips', async () => {
    const q = sent[0]!; // the X-Request-ID nginx made
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
        await page.getByLabel('X-Request-ID').fill(q.id);
        const count = page.getByTestId('request-count');
        // 5 S, 12 N and 2 A spans carry it
        await expect.poll(async () => (await count.textContent()) ?? '', { timeout: 15_000 }).toMatch(/^19 requests/);
        const gwRow = page
          .locator('table tbody tr')
          .filter({ has: page.locator('td.c-op', { hasText: /^s-p$/ }) })
          .filter({ has: page.locator('td.c-proc', { hasText: /^nginx/ }) });
        await expect.poll(() => gwRow.count()).toBe(1);
        const gwPid = Number(/\d+/.exec((await gwRow.locator('td.c-proc').textContent()) ?? '')![0]);
        expect(pids.nginx).toContain(gwPid);
        await gwRow.locator('td.c-path').click();

        const summary = page.locator('.trace-summary');
        await expect.poll(async () => (await summary.textContent()) ?? '', { timeout: 15_000 }).toContain('19 spans');
        // every kind has its service: svca's OTel service (A), the processes (S), the network (N)
        const services = page.locator('.service-list li');
        await expect.poll(() => page.locator('.service-list .service-name').allTextContents()).toContain('svca');
        const kindsOf = async (name: string): Promise<string> =>
          (await services
            .filter({ has: page.locator('.service-name').getByText(name, { exact: true }) })
            .locator('.service-kinds')
            .textContent()) ?? '';
        expect(await kindsOf('svca')).toBe('A');
        expect(await kindsOf('nginx')).toBe('S');
        expect(await kindsOf('network')).toBe('N');
        // svca and svcb are both `node` processes: told apart by svca's OTel service and svcb's pid
        expect(await kindsOf('node (svca)')).toBe('S');
        expect(await kindsOf(`node (pid ${pids.svcb})`)).toBe('S');
        expect((await page.locator('.service-list .service-name').allTextContents()).sort()).toEqual(
          ['network', 'nginx', 'node (svca)', `node (pid ${pids.svcb})`, 'svca'].sort(),
        );

        // Hover one N and one A bar, placed from the same layout the view computes.
        const r = await runCli(['trace', '--db', db, '--request-id', q.id, '--json']);
        const layout = layoutTrace(JSON.parse(r.stdout) as Trace);
        const chart = page.getByTestId('trace-chart');
        const box = (await chart.boundingBox())!;
        const at = (b: Bar): { x: number; y: number } => ({
          x: box.x + ((b.x0 + b.x1) / 2 / layout.durationUs) * box.width,
          y: box.y + AXIS_HEIGHT + b.row * ROW_HEIGHT + ROW_HEIGHT / 2 - 1,
        });
        const tooltip = page.getByTestId('trace-tooltip');
        const nBar = layout.bars.find((b) => b.node.kind === 'N' && b.node.span.interface === 'tdv-svca')!;
        await page.mouse.move(at(nBar).x, at(nBar).y);
        await expect.poll(async () => (await tooltip.textContent()) ?? '').toContain('interface tdv-svca');
        expect(await tooltip.textContent()).toMatch(/^N HTTP GET \/chain\/asn\/0\?q=0 @ s tdv-svca/);
        await page.screenshot({ path: join(ARTIFACTS, 'e2e-asn-trace-n.png') });
        const aBar = layout.bars.find((b) => b.node.kind === 'A' && b.node.span.observation_point === 's-app')!;
        await page.mouse.move(at(aBar).x, at(aBar).y);
        await expect.poll(async () => (await tooltip.textContent()) ?? '').toMatch(/service svca · instance \S+/);
        expect(await tooltip.textContent()).toMatch(/^A HTTP GET/);
        await page.screenshot({ path: join(ARTIFACTS, 'e2e-asn-trace-a.png') });
        await page.mouse.move(box.x + box.width - 3, box.y + 3);
        await page.waitForTimeout(600); // for the screenshot only: the aggregated view animates
        await page.screenshot({ path: join(ARTIFACTS, 'e2e-asn-trace.png'), fullPage: true });
      } finally {
        await context.close();
      }
    } finally {
      serve.child.kill('SIGTERM');
      await serve.result;
    }
  });
});
