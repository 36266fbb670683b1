// The lab of test/lab (network namespaces, nginx gateway, upstreams, sshd) as seen by
// tests. Root tests bring it up once per file and tear it down after.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { APP_ROOT } from '../../main/paths.ts';
import { bpfIdsHeldBy } from './node-state.ts';

export const LAB_SCRIPT = join(APP_ROOT, 'test', 'lab', 'lab');
export const COLLECTOR_BIN = join(APP_ROOT, 'remote-collector', 'target', 'release', 'tapdeck-collector');
export const TAPDECK_BIN = join(APP_ROOT, 'bin', 'tapdeck.js');

export interface Lab {
  TAPDECK_LAB_DIR: string;
  LAB_SSH_TARGET: string;
  LAB_SSH_NOSUDO_TARGET: string;
  LAB_SSH_HOST: string;
  LAB_SSH_PORT: string;
  LAB_SSH_KEY: string;
  LAB_SSH_HOSTKEY_PUB: string;
  LAB_CLIENT_NS: string;
  LAB_GW_URL: string;
  LAB_GW_HTTPS_URL: string;
  LAB_GW_CERT: string;
  LAB_GW_ADDR: string;
  LAB_NGINX_PID: string;
  LAB_NGINX_WORKER_PIDS: string;
  LAB_ACCESS_LOG: string;
  LAB_SVCA_URL: string;
  LAB_SVCA_PID: string;
  LAB_SVCA_LOG: string;
  LAB_SVCB_PID: string;
  LAB_SVCB_LOG: string;
  LAB_BRIDGE: string;
  LAB_LOAD_SCRIPT: string;
}

/** Where the lab's svca exports its OpenTelemetry spans: the bridge address (test/lab/otel-svca.mjs). */
export const LAB_OTLP_LISTEN = '198.18.0.1:4318';

/** One line of svca.log / svcb.log (test/lab/upstream.mjs). */
export interface UpstreamLogLine {
  time: string;
  service: string;
  method: string;
  url: string;
  status: number;
  x_request_id: string | null;
  traceparent: string | null;
}

export function readUpstreamLog(file: string): UpstreamLogLine[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as UpstreamLogLine);
}

/** Root tests need root; in CI (TAPDECK_REQUIRE_ROOT_TESTS=1) a missing root is a failure, not a skip. */
export const isRoot = process.getuid?.() === 0;
if (!isRoot && process.env['TAPDECK_REQUIRE_ROOT_TESTS'] === '1') {
  throw new Error('These tests need root (eBPF, network namespaces): run them as root.');
}

export function labUp(): Lab {
  execFileSync(LAB_SCRIPT, ['up'], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 120_000 });
  return readLab();
}

export function labDown(): void {
  spawnSync(LAB_SCRIPT, ['down'], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 60_000 });
}

export function readLab(): Lab {
  const dir = process.env['TAPDECK_LAB_DIR'] ?? '/tmp/tapdeck-lab';
  return JSON.parse(readFileSync(join(dir, 'lab.json'), 'utf8')) as Lab;
}

export interface AccessLogLine {
  msec: number;
  request_method: string;
  request_uri: string;
  status: number;
  request_time: number;
  upstream_addr: string;
  upstream_status: string;
  upstream_response_time: string;
  req_id: string;
  http_x_request_id: string;
}

export function readAccessLog(lab: Lab): AccessLogLine[] {
  return readFileSync(lab.LAB_ACCESS_LOG, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AccessLogLine);
}

export interface CurlResult {
  status: number;
  xRequestId: string | null;
}

/** One request from the client namespace, through the gateway (over HTTPS with `https`). */
export function curl(
  lab: Lab,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  opts: { https?: boolean } = {},
): CurlResult {
  const args = [
    'netns',
    'exec',
    lab.LAB_CLIENT_NS,
    'curl',
    '-s',
    '-o',
    '/dev/null',
    '-D',
    '-',
    '-X',
    method,
    '--max-time',
    '10',
  ];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  if (method === 'POST' || method === 'PUT') args.push('--data', '{"n":1}', '-H', 'Content-Type: application/json');
  if (opts.https) args.push('--cacert', lab.LAB_GW_CERT);
  args.push(`${opts.https ? lab.LAB_GW_HTTPS_URL : lab.LAB_GW_URL}${path}`);
  const out = execFileSync('ip', args, { encoding: 'utf8', timeout: 15_000 });
  const status = Number(/^HTTP\/1\.[01] (\d{3})/m.exec(out)?.[1] ?? 0);
  const xrid = /^x-request-id:\s*(.+?)\s*$/im.exec(out)?.[1] ?? null;
  return { status, xRequestId: xrid };
}

export interface LoadSummary {
  sent: number;
  statuses: Record<string, number>;
  errors: number;
  elapsed_ms: number;
}

/** Runs test/lab/load.mjs in the client namespace (bounded count and time). */
export function runLoad(
  lab: Lab,
  opts: {
    count: number;
    concurrency: number;
    out: string;
    timeLimitSec?: number;
    url?: string;
    mixFile?: string;
    extra?: string[];
    keepalive?: boolean;
  },
): Promise<LoadSummary> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        lab.LAB_CLIENT_NS,
        process.execPath,
        lab.LAB_LOAD_SCRIPT,
        '--url',
        opts.url ?? lab.LAB_GW_URL,
        '--count',
        String(opts.count),
        '--concurrency',
        String(opts.concurrency),
        '--out',
        opts.out,
        '--time-limit',
        String(opts.timeLimitSec ?? 60),
        ...(opts.mixFile ? ['--mix', opts.mixFile] : []),
        ...(opts.extra ?? []),
        '--keepalive',
        opts.keepalive === false ? 'off' : 'on',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`load.mjs exited ${code}: ${out}`));
      try {
        resolve(JSON.parse(out) as LoadSummary);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

/**
 * Names of the BPF programs that a running tapdeck process holds. Debian 12's
 * bpftool lists no `pids`, so the holders are found through /proc/PID/fdinfo.
 */
export function loadedCollectorPrograms(): string[] {
  const r = spawnSync('bpftool', ['prog', 'list', '--json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bpftool prog list failed: ${r.stderr}`);
  const progs = JSON.parse(r.stdout) as { id: number; name?: string; pids?: { comm: string }[] }[];
  const held = new Set<number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let comm: string;
    try {
      comm = readFileSync(`/proc/${d}/comm`, 'utf8');
    } catch {
      continue;
    }
    if (comm.startsWith('tapdeck')) for (const id of bpfIdsHeldBy(Number(d)).progIds) held.add(id);
  }
  return progs
    .filter((p) => held.has(p.id) || p.pids?.some((x) => x.comm.startsWith('tapdeck')))
    .map((p) => p.name ?? '?');
}
