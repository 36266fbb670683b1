// `tapdeck`: the CLI contract of DESIGN.md. Errors go to stderr with a non-zero exit
// and a sentence that says what to do.

import { existsSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { FlowQuery, RequestQuery } from '../api/contract.ts';
import { MAX_TRACE_DEPTH, type Trace, type TraceNode, type TraceStart } from '../api/trace.ts';
import { parseDurationSec, parseOtlpListen } from '../api/parse.ts';
import { FLOW_FIELDS, SPAN_FIELDS, type ResponseStatus, type StoredFlow, type StoredSpan } from '../api/records.ts';
import { DEFAULT_SIGNALS, MAX_DURATION_SEC, signalsProblem, startCapture } from '../capture/session.ts';
import { EventBus } from '../core/events.ts';
import { VERSION } from '../paths.ts';
import { Store } from '../store/store.ts';
import { parseTraceStart } from '../trace/start.ts';

export class UsageError extends Error {
  override name = 'UsageError';
}

const USAGE = `tapdeck ${VERSION}: capture a gateway node over SSH into one SQLite file, and read it.

  tapdeck capture  --target [user@]host[:port] [--identity FILE] [--jump HOST] [--known-hosts FILE]
                   [--accept-new-host-key] [--process NAME|PID ...] [--duration 30s]
                   [--signals s,n,a] [--otlp-listen IP:PORT|off] --db FILE
  tapdeck requests --db FILE [--method M] [--path TEXT] [--domain HOST] [--status ok|client_error|server_error|timeout|unknown]
                   [--code N | --min-code N --max-code N] [--x-request-id ID] [--min-duration MS]
                   [--observation-point s-p|c-p|...] [--capture ID] [--json] [--limit N]
  tapdeck flows    --db FILE [--observation-point c|s|c-nd|s-nd|local|rest|c-p|s-p ...] [--interface NAME] [--ip ADDR]
                   [--port N] [--close-reason fin|client_reset|server_reset|idle|capture_end] [--capture ID]
                   [--json] [--limit N]
  tapdeck trace    --db FILE (--request-id ID | --trace-id ID | --span ID) [--json]
  tapdeck serve    [--db FILE] [--port N]
  tapdeck --version
`;

/** `30`, `30s`, `5m`, `1h` → seconds, or a UsageError that says how to write it. */
export function parseDuration(s: string): number {
  const sec = parseDurationSec(s);
  if (sec === null) throw new UsageError(`--duration "${s}" is not a duration: write e.g. 30s, 5m or 1h.`);
  if (sec > MAX_DURATION_SEC)
    throw new UsageError(
      `--duration "${s}" is longer than the 1h maximum a capture may run: capture in several runs of 1h or less.`,
    );
  return sec;
}

function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, allowPositionals: false, strict: true });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\n${USAGE}`);
  }
}

function need(v: string | undefined, flag: string): string {
  if (!v) throw new UsageError(`${flag} is required.\n\n${USAGE}`);
  return v;
}

function intArg(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new UsageError(`${flag} "${v}" is not a whole number.`);
  return n;
}

async function captureCmd(args: string[]): Promise<number> {
  const { values } = parse(args, {
    target: { type: 'string' },
    identity: { type: 'string' },
    jump: { type: 'string' },
    'known-hosts': { type: 'string' },
    'accept-new-host-key': { type: 'boolean' },
    process: { type: 'string', multiple: true },
    duration: { type: 'string' },
    'otlp-listen': { type: 'string' },
    signals: { type: 'string' },
    db: { type: 'string' },
  });
  const target = need(values.target, '--target');
  let otlpListen: string | undefined;
  if (values['otlp-listen'] !== undefined) {
    const v = parseOtlpListen(values['otlp-listen']);
    if (v === null)
      throw new UsageError(
        `--otlp-listen "${values['otlp-listen']}" is not an address: write IP:PORT (e.g. 127.0.0.1:4318, or 0.0.0.0:4318 to take spans from other hosts) or off.`,
      );
    otlpListen = v;
  }
  const signals = values.signals
    ? values.signals
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : DEFAULT_SIGNALS;
  const signalsError = signalsProblem(signals);
  if (signalsError) throw new UsageError(`--${signalsError}`);
  const db = need(values.db, '--db');
  const durationSec = values.duration ? parseDuration(values.duration) : 30;
  const store = await Store.open(db);
  const events = new EventBus();
  const log = (line: string): void => void process.stderr.write(`tapdeck: ${line}\n`);
  events.on('capture:updated', (c) => {
    if (c.state === 'running' || c.state === 'stopping') {
      const s = c.stats;
      const cpu = s.collectorCpuPct !== null ? ` cpu ${s.collectorCpuPct}%` : '';
      const rss = s.collectorRssBytes !== null ? ` rss ${(s.collectorRssBytes / 1048576).toFixed(1)} MB` : '';
      log(`${c.state}: ${s.events} events, ${s.spans} spans, ${s.drops} drops${cpu}${rss}`);
    }
  });
  let handle;
  try {
    handle = await startCapture({
      target,
      identity: values.identity,
      jump: values.jump,
      knownHosts: values['known-hosts'],
      acceptNewHostKey: values['accept-new-host-key'] ?? false,
      processes: values.process ?? [],
      durationSec,
      otlpListen,
      signals,
      store,
      events,
      log,
    });
  } catch (err) {
    await store.close();
    throw err;
  }
  const onSignal = (): void => {
    log('stopping (detaching the collector and cleaning up the node)…');
    void handle.stop();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const info = await handle.done;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  await store.close();
  const s = info.stats;
  log(`${info.state}: ${info.message ?? ''}; ${s.spans} spans, ${s.events} events, ${s.drops} drops, in ${db}`);
  return info.state === 'done' ? 0 : 1;
}

function requestQuery(values: Record<string, string | boolean | string[] | undefined>): RequestQuery {
  const str = (k: string): string | undefined => values[k] as string | undefined;
  const status = str('status');
  const statuses = ['ok', 'client_error', 'server_error', 'timeout', 'unknown'];
  if (status && !statuses.includes(status))
    throw new UsageError(`--status "${status}" is not one of ${statuses.join(', ')}.`);
  const code = intArg(str('code'), '--code');
  const minDur = str('min-duration');
  return {
    captureId: intArg(str('capture'), '--capture'),
    observationPoints: values['observation-point'] as string[] | undefined,
    method: str('method'),
    path: str('path'),
    domain: str('domain'),
    status: status as ResponseStatus | undefined,
    minCode: code ?? intArg(str('min-code'), '--min-code'),
    maxCode: code ?? intArg(str('max-code'), '--max-code'),
    xRequestId: str('x-request-id'),
    minDurationUs: minDur !== undefined ? Number(minDur) * 1000 : undefined,
    limit: intArg(str('limit'), '--limit') ?? 100,
  };
}

function pad(s: string, n: number): string {
  return s.length >= n ? s.slice(0, n) : s + ' '.repeat(n - s.length);
}

export function formatTable(rows: StoredSpan[]): string {
  const lines = [
    `${pad('TIME', 23)} ${pad('OBS', 4)} ${pad('PROCESS', 10)} ${pad('METHOD', 7)} ${pad('HOST', 18)} ${pad('STATUS', 6)} ${pad('DUR(ms)', 9)} ${pad('X-REQUEST-ID', 34)} PATH`,
  ];
  for (const r of rows) {
    const t = new Date(r.start_time_us / 1000).toISOString().replace('T', ' ').replace('Z', '');
    lines.push(
      [
        pad(t, 23),
        pad(r.observation_point, 4),
        pad(r.process_name ?? '', 10),
        pad(r.request_type ?? '', 7),
        pad(r.request_domain ?? '', 18),
        pad(r.response_code !== null ? String(r.response_code) : r.response_status, 6),
        pad((r.duration_us / 1000).toFixed(2), 9),
        pad(r.x_request_id_0 ?? r.x_request_id_1 ?? '', 34),
        r.request_resource ?? '',
      ].join(' '),
    );
  }
  return lines.join('\n');
}

async function requestsCmd(args: string[]): Promise<number> {
  const { values } = parse(args, {
    db: { type: 'string' },
    json: { type: 'boolean' },
    limit: { type: 'string' },
    method: { type: 'string' },
    path: { type: 'string' },
    domain: { type: 'string' },
    status: { type: 'string' },
    code: { type: 'string' },
    'min-code': { type: 'string' },
    'max-code': { type: 'string' },
    'x-request-id': { type: 'string' },
    'min-duration': { type: 'string' },
    'observation-point': { type: 'string', multiple: true },
    capture: { type: 'string' },
  });
  const db = need(values.db, '--db');
  if (!existsSync(db))
    throw new UsageError(`${db} does not exist: capture into it first with "tapdeck capture --db ${db} …".`);
  const store = await Store.open(db);
  try {
    const page = await store.querySpans(requestQuery(values));
    if (values.json) {
      const rows = page.rows.map((r) => {
        const o: Record<string, unknown> = { id: r.id, capture_id: r.capture_id };
        for (const f of SPAN_FIELDS) o[f] = r[f];
        return o;
      });
      process.stdout.write(JSON.stringify(rows) + '\n');
    } else {
      process.stdout.write(formatTable(page.rows) + '\n');
      process.stderr.write(
        `${page.rows.length} of ${page.totalCapped ? `more than ${page.total}` : page.total} matching spans\n`,
      );
    }
  } finally {
    await store.close();
  }
  return 0;
}

const ms = (us: number): string => `${(us / 1000).toFixed(2)} ms`;

/** The trace as an indented text tree, one span per line. */
export function formatTrace(t: Trace): string {
  const lines: string[] = [];
  const conflicts = Object.entries(t.conflicts)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const skewed = t.skew
    .filter((x) => x.offsetUs !== 0)
    .map((x) => `${x.node} ${x.offsetUs >= 0 ? '+' : ''}${ms(x.offsetUs)}`);
  lines.push(
    `trace from span ${t.startSpanId}: ${t.spanCount} spans, ${ms(t.endUs - t.startUs)}, ${t.rounds} search rounds` +
      (t.truncated ? ' (stopped at a limit: the trace may be incomplete)' : '') +
      (t.pruned ? `, ${t.pruned} found but not in this tree` : '') +
      (t.beyondDepthLimit ? `, ${t.beyondDepthLimit} left out beyond ${MAX_TRACE_DEPTH} levels` : '') +
      (conflicts ? `; links refused: ${conflicts}` : '') +
      (skewed.length ? `; clock skew corrected: ${skewed.join(', ')}` : ''),
  );
  const walk = (n: TraceNode): void => {
    const s = n.span;
    const who = s.process_name ?? s.app_service ?? s.interface ?? '';
    const where = s.process_name !== null && s.pid !== null ? `${who}[${s.pid}]` : who;
    const status = s.response_code !== null ? String(s.response_code) : s.response_status;
    lines.push(
      `${'  '.repeat(n.depth)}${n.kind} ${pad(s.observation_point, 5)} ${where}${s.node ? `@${s.node}` : ''}  ` +
        `${s.request_type ?? ''} ${s.request_domain ?? ''}${s.request_resource ?? ''}  ${status}  ${ms(s.duration_us)}  self ${ms(n.selfTimeUs)}  (#${s.id}, ${n.linkedBy})`,
    );
    n.children.forEach(walk);
  };
  t.roots.forEach(walk);
  return lines.join('\n');
}

async function traceCmd(args: string[]): Promise<number> {
  const { values } = parse(args, {
    db: { type: 'string' },
    json: { type: 'boolean' },
    'request-id': { type: 'string' },
    'trace-id': { type: 'string' },
    span: { type: 'string' },
  });
  const db = need(values.db, '--db');
  const given = (['request-id', 'trace-id', 'span'] as const).filter((k) => values[k] !== undefined);
  if (given.length !== 1)
    throw new UsageError(
      `Say where the trace starts with exactly one of --request-id ID, --trace-id ID or --span ID (a span's "id" from \`tapdeck requests --json\`).\n\n${USAGE}`,
    );
  let start: TraceStart;
  if (values.span !== undefined) {
    const id = Number(values.span);
    if (!Number.isSafeInteger(id) || id <= 0)
      throw new UsageError(
        `--span "${values.span}" is not a span id: give the "id" of a row from \`tapdeck requests --json\`.`,
      );
    start = { spanId: id };
  } else if (values['request-id'] !== undefined) start = { requestId: values['request-id'] };
  else start = { traceId: values['trace-id']! };
  if (!existsSync(db))
    throw new UsageError(`${db} does not exist: capture into it first with "tapdeck capture --db ${db} …".`);
  const store = await Store.open(db);
  try {
    const trace = await store.trace(parseTraceStart(start));
    process.stdout.write((values.json ? JSON.stringify(trace) : formatTrace(trace)) + '\n');
  } finally {
    await store.close();
  }
  return 0;
}

function flowQuery(values: Record<string, string | boolean | string[] | undefined>): FlowQuery {
  const str = (k: string): string | undefined => values[k] as string | undefined;
  return {
    captureId: intArg(str('capture'), '--capture'),
    observationPoints: values['observation-point'] as string[] | undefined,
    interface: str('interface'),
    ip: str('ip'),
    port: intArg(str('port'), '--port'),
    closeReason: str('close-reason'),
    limit: intArg(str('limit'), '--limit') ?? 100,
  };
}

function us(v: number | null): string {
  return v === null ? '' : v < 10_000 ? `${v}µs` : `${(v / 1000).toFixed(1)}ms`;
}

export function formatFlows(rows: StoredFlow[]): string {
  const lines = [
    `${pad('START', 23)} ${pad('OBS', 5)} ${pad('IFACE', 10)} ${pad('CLIENT', 21)} ${pad('SERVER', 21)} ${pad('PKTS TX/RX', 13)} ${pad('BYTES TX/RX', 19)} ${pad('CONNECT', 8)} ${pad('SRTT', 8)} ${pad('RETX', 5)} ${pad('RST', 5)} ${pad('ZWIN', 5)} CLOSE`,
  ];
  for (const r of rows) {
    const t = new Date(r.start_time_us / 1000).toISOString().replace('T', ' ').replace('Z', '');
    lines.push(
      [
        pad(t, 23),
        pad(r.observation_point, 5),
        pad(r.interface ?? '', 10),
        pad(`${r.client_ip ?? ''}:${r.client_port ?? ''}`, 21),
        pad(`${r.server_ip ?? ''}:${r.server_port ?? ''}`, 21),
        pad(`${r.packet_tx}/${r.packet_rx}`, 13),
        pad(`${r.byte_tx}/${r.byte_rx}`, 19),
        pad(us(r.connect_latency_us), 8),
        pad(us(r.srtt_us), 8),
        pad(String(r.retrans_tx + r.retrans_rx), 5),
        pad(`${r.rst_tx}/${r.rst_rx}`, 5),
        pad(String(r.zero_win_tx + r.zero_win_rx), 5),
        r.final ? (r.close_reason ?? 'closed') : 'open',
      ].join(' '),
    );
  }
  return lines.join('\n');
}

async function flowsCmd(args: string[]): Promise<number> {
  const { values } = parse(args, {
    db: { type: 'string' },
    json: { type: 'boolean' },
    limit: { type: 'string' },
    'observation-point': { type: 'string', multiple: true },
    interface: { type: 'string' },
    ip: { type: 'string' },
    port: { type: 'string' },
    'close-reason': { type: 'string' },
    capture: { type: 'string' },
  });
  const db = need(values.db, '--db');
  if (!existsSync(db))
    throw new UsageError(
      `${db} does not exist: capture into it first with "tapdeck capture --signals s,n --db ${db} …".`,
    );
  const store = await Store.open(db);
  try {
    const page = await store.queryFlows(flowQuery(values));
    if (values.json) {
      const rows = page.rows.map((r) => {
        const o: Record<string, unknown> = { id: r.id, capture_id: r.capture_id };
        for (const f of FLOW_FIELDS) o[f] = r[f];
        return o;
      });
      process.stdout.write(JSON.stringify(rows) + '\n');
    } else {
      process.stdout.write(formatFlows(page.rows) + '\n');
      process.stderr.write(
        page.total === 0
          ? `no flows in ${db}: flows come from packet capture ("tapdeck capture --signals s,n …")\n`
          : `${page.rows.length} of ${page.total} matching flows\n`,
      );
    }
  } finally {
    await store.close();
  }
  return 0;
}

async function serveCmd(args: string[]): Promise<number> {
  const { values } = parse(args, { db: { type: 'string' }, port: { type: 'string' } });
  const { serveCommand } = await import('../web/serve.ts');
  await serveCommand({ db: values.db, port: intArg(values.port, '--port') });
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'capture':
        return await captureCmd(rest);
      case 'requests':
        return await requestsCmd(rest);
      case 'trace':
        return await traceCmd(rest);
      case 'flows':
        return await flowsCmd(rest);
      case 'serve':
        return await serveCmd(rest);
      case '--version':
      case 'version':
        process.stdout.write(`${VERSION}\n`);
        return 0;
      case undefined:
      case '--help':
      case '-h':
      case 'help':
        process.stdout.write(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        throw new UsageError(`Unknown command "${cmd}".\n\n${USAGE}`);
    }
  } catch (err) {
    process.stderr.write(`tapdeck: ${(err as Error).message}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}
