// One capture: connect, probe, upload, run the collector, stream its frames into the
// capture file, stop, clean up. Every failure ends in a `failed` capture row with a
// sentence for the user; spans already received are always kept.

import type { Client, ClientChannel } from 'ssh2';
import type { CaptureInfo, CaptureRequest, CaptureState, CaptureStats } from '../api/contract.ts';
import type { Flow, NetnsRecord, Span } from '../api/records.ts';
import type { EventBus } from '../core/events.ts';
import {
  availableArches,
  collectorCommand,
  removeDeployment,
  startCollector,
  uploadCollector,
  type Deployment,
} from '../deploy/deploy.ts';
import { parseOtlpListen } from '../api/parse.ts';
import { CodedError } from '../errors.ts';
import { checkProbe, probeNode, type NodeProbe } from '../deploy/probe.ts';
import { FrameDecoder, type Frame } from '../ingest/frames.ts';
import { LineJoiner } from './log-lines.ts';
import { connect, formatTarget, parseTarget } from '../ssh/connect.ts';
import type { Store } from '../store/store.ts';

export interface CaptureOptions extends CaptureRequest {
  store: Store;
  events: EventBus;
  jump?: string;
  /** Progress lines for a terminal or a log. */
  log?: (line: string) => void;
}

export interface CaptureHandle {
  id: number;
  info(): CaptureInfo;
  /** Asks the collector to stop, waits for the capture to end. */
  stop(): Promise<CaptureInfo>;
  /** Settles when the capture has ended, cleanly or not. */
  done: Promise<CaptureInfo>;
}

export const DEFAULT_DURATION_SEC = 30;
export const MAX_DURATION_SEC = 3600;
const SPAN_BATCH = 2_000;
const SPAN_FLUSH_MS = 25;
const SPANS_EVENT_MS = 250;
const STOP_GRACE_MS = 5_000;

export const SIGNALS = ['s', 'n', 'a'] as const;
/**
 * What a capture collects unless told otherwise: syscall S spans and the OTLP receiver's
 * A spans (it costs nothing while no application sends to it). Packet capture (`n`)
 * is opt-in: it adds one N span per interface an exchange crosses to the request log.
 */
export const DEFAULT_SIGNALS = ['s', 'a'];

/** Checks a `--signals` list; returns a sentence saying what is wrong, or null. */
export function signalsProblem(signals: unknown): string | null {
  const list: unknown[] = Array.isArray(signals) ? signals : [signals];
  const bad = list.filter((s) => typeof s !== 'string' || !(SIGNALS as readonly string[]).includes(s));
  if (list.length === 0 || bad.length > 0)
    return `signals "${list.map(String).join(',')}" are not valid: give a comma list of s (syscall spans), n (packet spans and flows), a (OTLP spans), e.g. s,n.`;
  return null;
}

export class CaptureError extends Error {
  override name = 'CaptureError';
  readonly captureId: number;
  constructor(captureId: number, message: string) {
    super(message);
    this.captureId = captureId;
  }
}

function str(v: unknown, fallback: string): string {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : fallback;
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/**
 * Starts a capture. Resolves once the collector said hello (it is running); rejects
 * with a CaptureError whose message tells the user what to do if it cannot start.
 */
export async function startCapture(opts: CaptureOptions): Promise<CaptureHandle> {
  const { store, events } = opts;
  const log = opts.log ?? (() => undefined);
  const target = parseTarget(opts.target);
  const jump = opts.jump ? parseTarget(opts.jump) : undefined;
  if (opts.otlpListen !== undefined && parseOtlpListen(opts.otlpListen) === null) {
    throw new CodedError(
      'invalid_otlp_listen',
      `"${opts.otlpListen}" is not an OTLP receiver address: write IP:PORT (e.g. 127.0.0.1:4318 or 0.0.0.0:4318) or off.`,
    );
  }
  if (opts.durationSec !== undefined && !(opts.durationSec <= MAX_DURATION_SEC)) {
    throw new CodedError(
      'invalid_duration',
      `A capture runs for at most 1h (${MAX_DURATION_SEC} s), not ${opts.durationSec} s: capture in several runs of 1h or less.`,
    );
  }
  const durationSec = Math.max(1, opts.durationSec ?? DEFAULT_DURATION_SEC);
  const signals = opts.signals ?? DEFAULT_SIGNALS;
  const signalsError = signalsProblem(signals);
  if (signalsError) throw new CodedError('invalid_signals', `Cannot start the capture: ${signalsError}`);
  const startedAtUs = Date.now() * 1000;
  const t0 = performance.now();
  const id = await store.createCapture({ target: formatTarget(target), startedAtUs });

  let info: CaptureInfo = {
    id,
    target: formatTarget(target),
    node: null,
    state: 'connecting',
    startedAtUs,
    endedAtUs: null,
    message: null,
    stats: { events: 0, spans: 0, drops: 0, dropReasons: {}, collectorCpuPct: null, collectorRssBytes: null },
  };
  const publish = async (
    patch: Partial<Omit<CaptureInfo, 'stats'>> & { stats?: CaptureStats },
    extra: Record<string, unknown> = {},
  ): Promise<void> => {
    info = { ...info, ...patch };
    const stored = await store.updateCapture({
      id,
      state: patch.state,
      message: patch.message,
      node: patch.node,
      endedAtUs: patch.endedAtUs,
      stats: patch.stats,
      ...extra,
    });
    info = { ...info, stats: { ...info.stats, spans: stored.stats.spans } };
    events.emit('capture:updated', info);
  };

  let client: Client | null = null;
  let deployment: Deployment | null = null;
  let probe: NodeProbe | null = null;
  let channel: ClientChannel | null = null;

  const fail = async (err: unknown): Promise<never> => {
    const message = (err as Error).message;
    client?.end();
    await publish({ state: 'failed', message, endedAtUs: Date.now() * 1000 });
    throw new CaptureError(id, message);
  };

  try {
    log(`connecting to ${formatTarget(target)}${jump ? ` via ${formatTarget(jump)}` : ''}`);
    client = await connect({
      target,
      jump,
      identity: opts.identity,
      knownHostsFile: opts.knownHosts,
      acceptNewHostKey: opts.acceptNewHostKey,
      onHostKeyAdded: (host, type) => log(`recorded the ${type} host key of ${host}`),
    });
    probe = await probeNode(client);
    checkProbe(probe, availableArches());
    await publish({ state: 'deploying', node: probe.hostname }, { kernel: probe.kernel, arch: probe.arch });
    log(`${probe.hostname}: ${probe.arch}, kernel ${probe.kernel}, ${probe.privilege}`);
    deployment = await uploadCollector(client, probe);
    log(`uploaded the collector (${deployment.bytes} bytes, sha256 checked) to ${deployment.dir}`);
    channel = await startCollector(
      client,
      collectorCommand(deployment, probe, {
        processes: opts.processes ?? [],
        durationSec,
        otlpListen: opts.otlpListen,
        signals,
      }),
    );
  } catch (err) {
    if (client && deployment) await removeDeployment(client, deployment.dir).catch(() => undefined);
    return fail(err);
  }

  // From here on the collector runs: stream frames until it ends.
  const node = probe.hostname;
  const decoder = new FrameDecoder();
  let batch: Span[] = [];
  let flowBatch: Flow[] = [];
  let flushTimer: NodeJS.Timeout | null = null;
  let spansSinceEvent = 0;
  let spansEventTimer: NodeJS.Timeout | null = null;
  let lastCpuUs: number | null = null;
  let lastElapsedMs: number | null = null;
  let fatal: string | null = null;
  let byeReason: string | null = null;
  let stderrTail = '';
  const stderrLines = new LineJoiner();
  let stopRequested = false;

  let resolveStarted!: () => void;
  let rejectStarted!: (e: Error) => void;
  const started = new Promise<void>((res, rej) => {
    resolveStarted = res;
    rejectStarted = rej;
  });

  const flushSpans = (): void => {
    if (flushTimer) {
      clearTimeout(flushTimer);
      flushTimer = null;
    }
    if (flowBatch.length > 0) {
      store.upsertFlows(id, flowBatch);
      flowBatch = [];
    }
    if (batch.length === 0) return;
    store.appendSpans(id, batch);
    spansSinceEvent += batch.length;
    info = { ...info, stats: { ...info.stats, spans: info.stats.spans + batch.length } };
    batch = [];
    spansEventTimer ??= setTimeout(() => {
      spansEventTimer = null;
      events.emit('spans:added', { captureId: id, count: spansSinceEvent });
      spansSinceEvent = 0;
    }, SPANS_EVENT_MS);
  };

  const onFrame = (f: Frame): void => {
    switch (f.type) {
      case 'hello':
        void publish(
          { state: 'running' },
          {
            collectorVersion: str(f.body['collector_version'], ''),
            kernel: str(f.body['kernel'], probe.kernel),
            hello: f.body,
          },
        );
        log(
          `collector ${str(f.body['collector_version'], '?')} running on ${node} (connect, probe, upload, start: ${((performance.now() - t0) / 1000).toFixed(2)} s)`,
        );
        resolveStarted();
        break;
      case 'span': {
        const s = f.body as unknown as Span;
        s.node = node;
        batch.push(s);
        if (batch.length >= SPAN_BATCH) flushSpans();
        else flushTimer ??= setTimeout(flushSpans, SPAN_FLUSH_MS);
        break;
      }
      case 'process':
        void store.upsertProcess(id, {
          pid: num(f.body['pid']),
          ppid: typeof f.body['ppid'] === 'number' ? f.body['ppid'] : null,
          process_name: (f.body['process_name'] as string | undefined) ?? null,
          cmdline: (f.body['cmdline'] as string | undefined) ?? null,
          exe: (f.body['exe'] as string | undefined) ?? null,
          // Additions of collector 0.1 (STREAM.md); older collectors leave them out.
          netns: typeof f.body['netns'] === 'number' ? f.body['netns'] : null,
          container_id: typeof f.body['container_id'] === 'string' ? f.body['container_id'] : null,
          gateway: typeof f.body['gateway'] === 'string' ? f.body['gateway'] : null,
        });
        break;
      case 'stats': {
        const drops = (f.body['drops'] ?? {}) as Record<string, number>;
        const lost = num(f.body['events_lost']);
        const dropReasons: Record<string, number> = { ...drops };
        if (lost > 0 && dropReasons['ringbuf_full'] === undefined) dropReasons['ringbuf_full'] = lost;
        const cpuUs = num(f.body['cpu_user_us']) + num(f.body['cpu_sys_us']);
        const elapsedMs = num(f.body['elapsed_ms']);
        let cpuPct = info.stats.collectorCpuPct;
        if (lastCpuUs !== null && lastElapsedMs !== null && elapsedMs > lastElapsedMs) {
          cpuPct = Math.round(((cpuUs - lastCpuUs) / ((elapsedMs - lastElapsedMs) * 1000)) * 1000) / 10;
        }
        lastCpuUs = cpuUs;
        lastElapsedMs = elapsedMs;
        flushSpans();
        void publish({
          stats: {
            events: num(f.body['events_seen']),
            spans: info.stats.spans,
            drops: Object.values(dropReasons).reduce((a, b) => a + num(b), 0),
            dropReasons,
            collectorCpuPct: cpuPct,
            collectorRssBytes: num(f.body['rss_bytes']) || null,
          },
        });
        break;
      }
      case 'error':
        fatal = str(f.body['message'], 'the collector failed');
        log(`collector error: ${fatal}`);
        break;
      case 'bye':
        byeReason = str(f.body['reason'], 'unknown');
        break;
      case 'flow': {
        const fl = f.body as unknown as Flow;
        fl.node = node;
        flowBatch.push(fl);
        if (flowBatch.length >= SPAN_BATCH) flushSpans();
        else flushTimer ??= setTimeout(flushSpans, SPAN_FLUSH_MS);
        break;
      }
      case 'netns':
        void store.upsertNetns(id, f.body as unknown as NetnsRecord).catch((err: Error) => {
          log(`could not store namespace ${String(f.body['netns'])}: ${err.message}`);
        });
        break;
    }
  };

  channel.on('data', (chunk: Buffer) => {
    for (const f of decoder.push(chunk)) onFrame(f);
    for (const fault of decoder.faults.splice(0)) log(fault.message);
  });
  channel.stderr.on('data', (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    stderrTail = (stderrTail + text).slice(-4000);
    for (const line of stderrLines.push(text)) log(`[collector] ${line.trim()}`);
  });

  const done = new Promise<CaptureInfo>((resolve) => {
    channel.on('close', (code: number | null, signal: string | null) => {
      void (async () => {
        for (const line of stderrLines.end()) log(`[collector] ${line}`);
        flushSpans();
        if (spansEventTimer) clearTimeout(spansEventTimer);
        await store.flush();
        events.emit('spans:added', { captureId: id, count: spansSinceEvent });
        let cleaned = false;
        try {
          if (client && deployment) cleaned = await removeDeployment(client, deployment.dir);
        } catch {
          cleaned = false;
        }
        client?.end();
        const truncated = decoder.pendingBytes > 0;
        let state: CaptureState = 'done';
        let message: string;
        if (fatal) {
          state = 'failed';
          message = fatal;
        } else if (byeReason) {
          message =
            {
              duration: 'the capture reached its duration',
              stdin_closed: 'stopped',
              signal: 'the collector was stopped by a signal',
            }[byeReason] ?? `ended (${byeReason})`;
        } else if (stopRequested) {
          message = 'stopped';
        } else {
          state = 'failed';
          const tail = stderrTail.trim().split('\n').slice(-3).join(' | ');
          message = `The collector ended unexpectedly (exit ${code ?? signal ?? '?'})${tail ? `: ${tail}` : ''}. Spans received so far are kept.`;
        }
        if (truncated) message += ' The last frame was cut off; everything before it is kept.';
        if (!cleaned)
          message += ` Could not confirm removal of ${deployment?.dir ?? 'the collector directory'} on ${node}: check and remove it by hand.`;
        await publish({ state, message, endedAtUs: Date.now() * 1000 });
        rejectStarted(new CaptureError(id, message));
        resolve(info);
      })();
    });
  });

  const stop = async (): Promise<CaptureInfo> => {
    if (info.state === 'done' || info.state === 'failed') return info;
    stopRequested = true;
    if (info.state === 'running') await publish({ state: 'stopping' });
    channel.end(); // EOF on the collector's stdin: it detaches and exits
    const timer = setTimeout(() => {
      channel.signal('TERM');
      setTimeout(() => channel.close(), STOP_GRACE_MS).unref();
    }, STOP_GRACE_MS);
    timer.unref();
    return done.finally(() => clearTimeout(timer));
  };

  try {
    await started;
  } catch (err) {
    await done;
    throw err;
  }
  return { id, info: () => info, stop, done };
}
