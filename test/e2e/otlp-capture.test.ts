// A spans end to end, as an SRE would run it on an instrumented upstream node:
// `tapdeck capture --otlp-listen` over SSH to the lab (the collector's receiver on the
// bridge, where svca's OpenTelemetry SDK exports), requests through the gateway, then
// `tapdeck requests --json`: the application spans are in the capture file next to
// the eBPF spans of svcb, linked by trace and span ids. Ground truth: svca's own log.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredSpan } from '../../main/api/records.ts';
import { runCli, startCli } from '../support/cli.ts';
import { waitForSpans } from '../support/capture-db.ts';
import { until } from '../support/collector-run.ts';
import { curl, isRoot, LAB_OTLP_LISTEN, labDown, labUp, readUpstreamLog, type Lab } from '../support/lab.ts';

const work = mkdtempSync(join(tmpdir(), 'td-e2e-otlp-'));

describe('tapdeck capture --otlp-listen', () => {
  it('refuses a host name where an address is needed, saying what to write', async () => {
    const r = await runCli(['capture', '--target', 'x@127.0.0.1', '--otlp-listen', 'localhost:4318', '--db', 'x.db']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--otlp-listen "localhost:4318" is not an address: write IP:PORT/);
  });
});

describe.skipIf(!isRoot)('A spans through tapdeck capture into SQLite (root, lab)', () => {
  let lab: Lab;
  beforeAll(() => {
    lab = labUp();
  });
  afterAll(() => labDown());

  it('stores svca’s OTel spans with the eBPF spans of svcb, linked by trace ids', async () => {
    const db = join(work, 'otlp.sqlite');
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
      lab.LAB_SVCB_PID,
      '--otlp-listen',
      LAB_OTLP_LISTEN,
      '--duration',
      '60s',
      '--db',
      db,
    ]);
    await until('the collector to run', () => /collector .* running on/.test(cap.stderrSoFar()), 30_000);
    await until('the OTLP receiver', () =>
      /OTLP\/HTTP receiver on http:\/\/198\.18\.0\.1:4318/.test(cap.stderrSoFar()),
    );

    const tag = `e2e-otlp-${Date.now()}`;
    const N = 12;
    for (let i = 0; i < N; i++) {
      expect(curl(lab, 'GET', `/chain/orders/${i}`, { 'X-Request-ID': `${tag}-${i}` }).status).toBe(200);
    }
    // svca's s-app and c-app span of every request, however long the SDK's exporter takes.
    await waitForSpans(db, `signal_source = 'otel' AND x_request_id_0 LIKE '${tag}-%'`, 2 * N);
    cap.child.kill('SIGINT');
    const r = await cap.result;
    expect(r.code, r.stderr).toBe(0);

    const q = await runCli(['requests', '--db', db, '--json', '--limit', '10000']);
    expect(q.code, q.stderr).toBe(0);
    const rows = (JSON.parse(q.stdout) as StoredSpan[]).filter((s) => s.x_request_id_0?.startsWith(tag));
    const handled = readUpstreamLog(lab.LAB_SVCA_LOG).filter((l) => l.x_request_id?.startsWith(tag));
    expect(handled).toHaveLength(N);
    const sApp = rows.filter((s) => s.signal_source === 'otel' && s.observation_point === 's-app');
    const cApp = rows.filter((s) => s.signal_source === 'otel' && s.observation_point === 'c-app');
    const svcb = rows.filter((s) => s.signal_source === 'ebpf' && s.observation_point === 's-p');
    expect(sApp).toHaveLength(handled.length);
    expect(cApp).toHaveLength(N);
    expect(svcb).toHaveLength(N);
    for (const a of sApp) {
      expect(a).toMatchObject({ app_service: 'svca', l7_protocol: 'HTTP', request_type: 'GET', response_code: 200 });
      expect(a.node).toBeTruthy();
      const c = cApp.find((x) => x.parent_span_id === a.span_id)!;
      expect(c, `client span under ${a.span_id}`).toBeDefined();
      expect(c.trace_id).toBe(a.trace_id);
      const b = svcb.find((x) => x.span_id === c.span_id)!;
      expect(b, `svcb S span with span id ${c.span_id}`).toBeDefined();
      expect(b.trace_id).toBe(a.trace_id);
      expect(b.x_request_id_0).toBe(a.x_request_id_0);
    }
    // The request log filters A spans like any other.
    const f = await runCli(['requests', '--db', db, '--json', '--observation-point', 's-app', '--limit', '10000']);
    const only = (JSON.parse(f.stdout) as StoredSpan[]).filter((s) => s.x_request_id_0?.startsWith(tag));
    expect(only).toHaveLength(N);
  });
});
