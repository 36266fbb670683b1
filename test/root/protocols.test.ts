// Protocol depth, captured for real (root, eBPF) on the lab gateway: HTTP/2 over
// cleartext (curl with prior knowledge, several streams on one connection) and gRPC
// (a grpc-js client through nginx's grpc_pass to a grpc-js server). Ground truth: the
// clients' own counts and statuses, nginx's HTTP/2 access log, the gRPC server's log.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAndWait, spansOf, stopCollector, until } from '../support/collector.ts';
import { COLLECTOR_BIN, isRoot, labDown, labUp, readAccessLog, type Lab } from '../support/lab.ts';

type ProtoLab = Lab & {
  LAB_H2_URL: string;
  LAB_H2_ACCESS_LOG: string;
  LAB_GRPC_TARGET: string;
  LAB_GRPC_CLIENT_SCRIPT: string;
  LAB_H2_CLIENT_SCRIPT: string;
  LAB_PROTO_LOG: string;
  LAB_WS_URL: string;
};

interface H2LogLine {
  server_protocol: string;
  request_method: string;
  request_uri: string;
  status: number;
  upstream_addr: string;
  grpc_status: string;
  req_id: string;
}

const jsonLines = <T>(file: string): T[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as T);

const inClient = (lab: Lab, cmd: string, args: string[]): string =>
  execFileSync('ip', ['netns', 'exec', lab.LAB_CLIENT_NS, cmd, ...args], { encoding: 'utf8', timeout: 60_000 });

describe.skipIf(!isRoot)('protocols on the lab gateway (root, eBPF)', () => {
  let lab: ProtoLab;
  beforeAll(() => {
    if (!existsSync(COLLECTOR_BIN)) throw new Error(`${COLLECTOR_BIN} is missing: run npm run build:collector`);
    lab = labUp() as ProtoLab;
  });
  afterAll(() => labDown());

  it('HTTP/2 cleartext: every stream is one s-p span with its :path and :status', async () => {
    const run = await startAndWait(['--process', lab.LAB_NGINX_PID, '--duration', '60s']);
    const tag = `h2-${Date.now()}`;
    const wanted = [
      ...Array.from({ length: 8 }, (_, i) => ({ path: `/api/${tag}/${i}?n=${i}`, status: 200 })),
      { path: `/status/404?t=${tag}`, status: 404 },
      { path: `/status/503?t=${tag}`, status: 503 },
      { path: `/slow?ms=200&t=${tag}`, status: 200 },
    ];
    // One connection, up to 4 streams at a time (node:http2 with prior knowledge).
    const summary = JSON.parse(
      inClient(lab, process.execPath, [
        lab.LAB_H2_CLIENT_SCRIPT,
        '--url',
        lab.LAB_H2_URL,
        '--concurrency',
        '4',
        ...wanted.map((w) => w.path),
      ]),
    ) as { sent: number; results: { path: string; status: number; x_request_id: string; stream_id: number }[] };
    expect(summary.sent).toBe(wanted.length);
    for (const r of summary.results) expect(r.status, r.path).toBe(wanted.find((w) => w.path === r.path)!.status);
    expect(new Set(summary.results.map((r) => r.stream_id)).size).toBe(wanted.length);
    await until(
      'spans',
      () => spansOf(run).filter((s) => s['l7_protocol'] === 'HTTP2').length >= wanted.length,
      10_000,
    ).catch(() => undefined);
    const stats = await stopCollector(run);

    const log = jsonLines<H2LogLine>(lab.LAB_H2_ACCESS_LOG).filter((l) => l.request_uri.includes(tag));
    expect(log).toHaveLength(wanted.length);
    expect(log.every((l) => l.server_protocol === 'HTTP/2.0')).toBe(true);

    const sp = spansOf(run).filter(
      (s) => s['observation_point'] === 's-p' && String(s['request_resource']).includes(tag),
    );
    expect(sp.map((s) => s['request_resource']).sort()).toEqual(wanted.map((w) => w.path).sort());
    for (const line of log) {
      const s = sp.find((x) => x['request_resource'] === line.request_uri)!;
      expect(s).toMatchObject({
        signal_source: 'ebpf',
        l7_protocol: 'HTTP2',
        version: '2',
        request_type: 'GET',
        request_domain: lab.LAB_H2_URL.replace('http://', ''),
        endpoint: line.request_uri.split('?')[0],
        response_code: line.status,
        response_status: line.status >= 500 ? 'server_error' : line.status >= 400 ? 'client_error' : 'ok',
        server_port: 8081,
        client_ip: '198.18.0.10',
        process_name: 'nginx',
        x_request_id_1: line.req_id,
      });
      // What the client itself received on that stream.
      expect(summary.results.find((r) => r.path === line.request_uri)?.x_request_id).toBe(line.req_id);
    }
    const slow = sp.find((s) => String(s['request_resource']).startsWith('/slow'))!;
    expect(slow['duration_us']).toBeGreaterThanOrEqual(200_000);
    // nginx proxied each stream to svca over HTTP/1.1: those c-p spans carry the same X-Request-ID.
    const cp = spansOf(run).filter(
      (s) => s['observation_point'] === 'c-p' && String(s['request_resource']).includes(tag),
    );
    expect(cp.map((s) => s['x_request_id_0']).sort()).toEqual(log.map((l) => l.req_id).sort());
    expect(cp.every((s) => s['l7_protocol'] === 'HTTP')).toBe(true);
    expect((stats['l7_parse_errors'] as Record<string, unknown>)['HTTP2']).toBeUndefined();
    expect((stats['spans_by_protocol'] as Record<string, number>)['HTTP2']).toBe(wanted.length);
  });

  it('gRPC: calls are s-p and c-p spans with /package.Service/Method and grpc-status', async () => {
    const run = await startAndWait(['--process', lab.LAB_NGINX_PID, '--duration', '60s']);
    const prefix = `g-${Date.now()}`;
    const count = 15;
    const summary = JSON.parse(
      inClient(lab, process.execPath, [
        lab.LAB_GRPC_CLIENT_SCRIPT,
        '--target',
        lab.LAB_GRPC_TARGET,
        '--count',
        String(count),
        '--fail-codes',
        '5,14',
        '--request-id-prefix',
        prefix,
        '--time-limit',
        '30',
      ]),
    ) as { sent: number; codes: Record<string, number>; calls: { x_request_id: string; code: number }[] };
    expect(summary.sent).toBe(count);
    expect(summary.codes).toEqual({ 0: 5, 5: 5, 14: 5 });
    const mine = (s: Record<string, unknown>) => String(s['x_request_id_0']).startsWith(prefix);
    await until(
      'spans',
      () => spansOf(run).filter((s) => s['l7_protocol'] === 'gRPC' && mine(s)).length >= 2 * count,
      10_000,
    ).catch(() => undefined);
    const stats = await stopCollector(run);

    const served = jsonLines<{ kind: string; code: number; x_request_id: string }>(lab.LAB_PROTO_LOG).filter(
      (l) => l.kind === 'grpc' && l.x_request_id.startsWith(prefix),
    );
    expect(served).toHaveLength(count);
    const log = jsonLines<H2LogLine>(lab.LAB_H2_ACCESS_LOG).filter((l) => l.request_uri === '/lab.Echo/Say');
    expect(log).toHaveLength(count);

    const grpc = spansOf(run).filter((s) => s['l7_protocol'] === 'gRPC' && mine(s));
    for (const op of ['s-p', 'c-p']) {
      const spans = grpc.filter((s) => s['observation_point'] === op);
      expect(spans, op).toHaveLength(count);
      for (const call of summary.calls) {
        const s = spans.find((x) => x['x_request_id_0'] === call.x_request_id);
        expect(s, `${op} span of ${call.x_request_id}`).toBeDefined();
        expect(s).toMatchObject({
          version: '2',
          request_type: 'POST',
          request_resource: '/lab.Echo/Say',
          endpoint: '/lab.Echo/Say',
          response_code: call.code,
          response_status: call.code === 0 ? 'ok' : call.code === 5 ? 'client_error' : 'server_error',
          response_exception: call.code === 0 ? null : `lab failure ${call.code}`,
          process_name: 'nginx',
        });
        expect(served.find((l) => l.x_request_id === call.x_request_id)?.code).toBe(call.code);
        if (op === 'c-p') expect(s).toMatchObject({ server_ip: '198.18.0.40', server_port: 50051 });
        else expect(s).toMatchObject({ server_port: 8081, client_ip: '198.18.0.10' });
      }
    }
    // The upstream call sits inside the inbound one.
    for (const c of grpc.filter((s) => s['observation_point'] === 'c-p')) {
      const s = grpc.find((x) => x['observation_point'] === 's-p' && x['x_request_id_0'] === c['x_request_id_0'])!;
      expect(c['start_time_us']).toBeGreaterThanOrEqual(s['start_time_us'] as number);
      expect(c['end_time_us']).toBeLessThanOrEqual(s['end_time_us'] as number);
    }
    expect((stats['l7_parse_errors'] as Record<string, unknown>)['HTTP2']).toBeUndefined();
    expect((stats['l7_connections'] as Record<string, number>)['HTTP2']).toBeGreaterThanOrEqual(1 + count);
  });
});

describe.skipIf(!isRoot)('HTTP/1.x edge cases and header redaction on the lab gateway (root, eBPF)', () => {
  let lab: ProtoLab;
  beforeAll(() => {
    if (!existsSync(COLLECTOR_BIN)) throw new Error(`${COLLECTOR_BIN} is missing: run npm run build:collector`);
    lab = labUp() as ProtoLab;
  });
  afterAll(() => labDown());

  const curlArgs = (url: string, ...opts: string[]) => ['-s', '-o', '/dev/null', '--max-time', '10', ...opts, url];

  it('HEAD, 204, 304, 100-continue, large headers and a WebSocket upgrade each give the right spans', async () => {
    // The largest copy cap: nginx reads a large header block in 1 KB, then up to 7 KB recv calls,
    // and each must be copied whole for the block to parse across them.
    const run = await startAndWait(['--process', lab.LAB_NGINX_PID, '--duration', '60s', '--max-payload', '8192']);
    const tag = `e-${Date.now()}`;
    const gw = lab.LAB_GW_URL;
    // HEAD then GET on one keep-alive connection: the HEAD response's Content-Length has no body behind it.
    inClient(lab, 'curl', [
      ...curlArgs(`${gw}/api/${tag}/head`, '-I', '-H', `X-Request-ID: ${tag}-head`),
      '--next',
      ...curlArgs(`${gw}/api/${tag}/after-head`, '-H', `X-Request-ID: ${tag}-after-head`),
    ]);
    inClient(lab, 'curl', curlArgs(`${gw}/status/204?t=${tag}`, '-H', `X-Request-ID: ${tag}-204`));
    inClient(lab, 'curl', curlArgs(`${gw}/status/304?t=${tag}`, '-H', `X-Request-ID: ${tag}-304`));
    inClient(lab, 'curl', [
      ...curlArgs(`${gw}/api/${tag}/continue`, '-H', 'Expect: 100-continue', '-H', `X-Request-ID: ${tag}-continue`),
      '--data-binary',
      'x'.repeat(3000),
    ]);
    // About 9 KB of headers: nginx reads them in several recv calls; X-Request-ID comes last.
    const filler = Array.from({ length: 6 }, (_, k) => ['-H', `X-Filler-${k}: ${'f'.repeat(1500)}`]).flat();
    inClient(lab, 'curl', curlArgs(`${gw}/api/${tag}/large`, ...filler, '-H', `X-Request-ID: ${tag}-large`));
    // A WebSocket through the gateway; one message looks like an HTTP request.
    const ws = inClient(lab, process.execPath, [
      '--input-type=module',
      '-e',
      `const w = new WebSocket('${lab.LAB_WS_URL}${tag}');
       const got = [];
       w.onopen = () => { for (const m of ['one', 'GET /inside HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n', 'three']) w.send(m); };
       w.onmessage = (e) => { got.push(e.data); if (got.length === 3) w.close(); };
       w.onclose = () => { console.log(JSON.stringify(got)); process.exit(0); };
       setTimeout(() => process.exit(1), 10000);`,
    ]);
    expect(JSON.parse(ws) as string[]).toHaveLength(3);
    await until('ws log', () => readFileSync(lab.LAB_PROTO_LOG, 'utf8').includes(`/${tag}`), 10_000);
    await new Promise((r) => setTimeout(r, 500));
    const stats = await stopCollector(run);

    const all = spansOf(run);
    const log = readAccessLog(lab).filter((l) => l.request_uri.includes(tag));
    const one = (op: string, xrid: string) => {
      const s = all.filter((x) => x['observation_point'] === op && x['x_request_id_0'] === xrid);
      expect(s, `${op} ${xrid}`).toHaveLength(1);
      return s[0]!;
    };
    for (const [name, method, code] of [
      ['head', 'HEAD', 200],
      ['after-head', 'GET', 200],
      ['204', 'GET', 204],
      ['304', 'GET', 304],
      ['continue', 'POST', 200],
      ['large', 'GET', 200],
    ] as const) {
      const xrid = `${tag}-${name}`;
      const line = log.find((l) => l.req_id === xrid);
      expect(line, `access log line of ${xrid}`).toBeDefined();
      expect(line!.status).toBe(code);
      expect(one('s-p', xrid)).toMatchObject({ request_type: method, response_code: code, response_status: 'ok' });
    }
    // nginx proxied these upstream too (the large one's upstream header block is cut by the copy cap,
    // so its X-Request-ID, sent last, is not seen there).
    for (const name of ['head', 'after-head', '204', '304', 'continue'])
      expect(one('c-p', `${tag}-${name}`)['response_code']).toBe(name === '204' ? 204 : name === '304' ? 304 : 200);
    expect(one('s-p', `${tag}-large`)['request_length']).toBeGreaterThan(9000);
    const cont = one('s-p', `${tag}-continue`);
    expect(cont['request_length']).toBeGreaterThan(3000);

    const wsSpans = all.filter((s) => String(s['request_resource']).startsWith('/ws/'));
    expect(
      wsSpans.map((s) => [s['observation_point'], s['request_resource'], s['response_code']].join(' ')).sort(),
    ).toEqual([`c-p /ws/${tag} 101`, `s-p /ws/${tag} 101`]);
    expect(all.some((s) => s['request_resource'] === '/inside')).toBe(false);
    const wsLog = jsonLines<{ kind: string; path: string; messages: number }>(lab.LAB_PROTO_LOG).find(
      (l) => l.kind === 'ws' && l.path === `/ws/${tag}`,
    );
    expect(wsLog?.messages).toBe(3);
    const errors = stats['parse_errors'] as Record<string, number>;
    expect(errors['not_http']).toBe(0);
    expect(errors['malformed']).toBe(0);
    expect(stats['non_http_connections']).toBe(0);
  });

  it('never ships Authorization, Cookie, Set-Cookie, Proxy-Authorization or --redact-header values', async () => {
    const run = await startAndWait([
      '--process',
      lab.LAB_NGINX_PID,
      '--duration',
      '60s',
      '--redact-header',
      'X-Api-Key',
      ...['authorization', 'cookie', 'set-cookie', 'proxy-authorization', 'x-api-key', 'user-agent'].flatMap((h) => [
        '--capture-header',
        h,
      ]),
    ]);
    const tag = `r${Date.now()}`;
    const secrets = {
      authorization: `Bearer SECRET-AUTH-${tag}`,
      cookie: `sid=SECRET-COOKIE-${tag}`,
      'proxy-authorization': `Basic SECRET-PROXY-${tag}`,
      'x-api-key': `SECRET-KEY-${tag}`,
    };
    const seed = `SECRET-SETCOOKIE-${tag}`;
    const headers = Object.entries(secrets).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
    inClient(lab, 'curl', [
      ...curlArgs(`${lab.LAB_GW_URL}/cookie/${tag}`, ...headers, '-H', `X-Cookie-Seed: ${seed}`, '-A', `ua-${tag}`),
    ]);
    const h2 = JSON.parse(
      inClient(lab, process.execPath, [
        lab.LAB_H2_CLIENT_SCRIPT,
        '--url',
        lab.LAB_H2_URL,
        ...Object.entries(secrets).flatMap(([k, v]) => ['--header', `${k}: ${v}`]),
        '--header',
        `user-agent: ua-${tag}`,
        `/api/${tag}/h2`,
      ]),
    ) as { results: { status: number }[] };
    expect(h2.results[0]!.status).toBe(200);
    await until(
      'spans',
      () => spansOf(run).filter((s) => String(s['request_resource']).includes(tag)).length >= 4,
      10_000,
    );
    await stopCollector(run);

    const bytes = Buffer.concat(run.raw);
    for (const secret of [...Object.values(secrets), seed]) {
      expect(bytes.includes(secret), `${secret} in the collector's output`).toBe(false);
      expect(bytes.includes(secret.replace(/^(Bearer|Basic) /, '')), secret).toBe(false);
    }
    const mine = spansOf(run).filter((s) => String(s['request_resource']).includes(tag));
    const sp1 = mine.find((s) => s['observation_point'] === 's-p' && s['l7_protocol'] === 'HTTP')!;
    const sp2 = mine.find((s) => s['observation_point'] === 's-p' && s['l7_protocol'] === 'HTTP2')!;
    for (const s of [sp1, sp2]) {
      expect((s['attributes'] as Record<string, unknown>)['headers']).toEqual({
        authorization: '[REDACTED]',
        cookie: '[REDACTED]',
        'proxy-authorization': '[REDACTED]',
        'x-api-key': '[REDACTED]',
        'user-agent': `ua-${tag}`,
      });
    }
    expect((sp1['attributes'] as Record<string, unknown>)['response_headers']).toEqual({ 'set-cookie': '[REDACTED]' });
    const hello = run.frames.find((f) => f.type === 'hello')!.body;
    expect(hello['redacted_headers']).toEqual([
      'authorization',
      'cookie',
      'proxy-authorization',
      'set-cookie',
      'x-api-key',
    ]);
  });
});
