// The one typed contract between the renderer and the core. Every call the renderer
// may make and every event the core pushes is declared here, once. The Electron
// preload, the web bridge and the renderer's client are all derived from it.
// This file must stay free of Node and Electron imports: the renderer imports it.

import type { ResponseStatus, StoredFlow, StoredSpan } from './records.ts';
import type { Trace, TraceStart } from './trace.ts';

export interface CaptureRequest {
  /** `[user@]host[:port]` */
  target: string;
  /** Private key file; when absent, ssh-agent (SSH_AUTH_SOCK) is used. */
  identity?: string;
  knownHosts?: string;
  acceptNewHostKey?: boolean;
  /** Process names or pids; empty means the collector's default (nginx, openresty). */
  processes?: string[];
  /** Seconds. */
  durationSec?: number;
  /**
   * Where the collector's OTLP/HTTP receiver listens on the node for A spans
   * (`IP:PORT`, or `off`); absent means the collector's default, 127.0.0.1:4318.
   */
  otlpListen?: string;
  /**
   * What the collector captures (its `--signals`): `s` syscall S spans, `n` packet N
   * spans and L4 flows, `a` OTLP A spans. Default: `['s', 'a']`.
   */
  signals?: string[];
}

export type CaptureState = 'connecting' | 'deploying' | 'running' | 'stopping' | 'done' | 'failed';

export interface CaptureStats {
  events: number;
  spans: number;
  drops: number;
  dropReasons: Record<string, number>;
  collectorCpuPct: number | null;
  collectorRssBytes: number | null;
}

export interface CaptureInfo {
  id: number;
  target: string;
  node: string | null;
  state: CaptureState;
  startedAtUs: number;
  endedAtUs: number | null;
  /** A sentence for the user when state is `failed`, or why it ended. */
  message: string | null;
  stats: CaptureStats;
}

export interface RequestQuery {
  captureId?: number;
  /** Only these observation points. */
  observationPoints?: string[];
  method?: string;
  /** Substring of request_resource. */
  path?: string;
  domain?: string;
  status?: ResponseStatus;
  minCode?: number;
  maxCode?: number;
  xRequestId?: string;
  minDurationUs?: number;
  fromUs?: number;
  toUs?: number;
  /** Rows with id lower than this (for paging backwards in time). */
  beforeId?: number;
  limit?: number;
}

export interface RequestPage {
  rows: StoredSpan[];
  /**
   * Rows matching the filter (not only this page), counted up to `COUNT_CAP`: when more
   * match, `total` is `COUNT_CAP` and `totalCapped` is true ("more than 10,000").
   */
  total: number;
  /** True when more than `total` rows match (the count stopped at `COUNT_CAP`). */
  totalCapped?: boolean;
}

export interface FlowQuery {
  captureId?: number;
  observationPoints?: string[];
  interface?: string;
  /** Client or server address. */
  ip?: string;
  /** Client or server port. */
  port?: number;
  closeReason?: string;
  fromUs?: number;
  toUs?: number;
  limit?: number;
}

export interface FlowPage {
  rows: StoredFlow[];
  total: number;
}

/** The request log counts matching rows up to this many (a full count of 10M rows takes seconds). */
export const COUNT_CAP = 10_000;

export interface AppInfo {
  version: string;
  dbPath: string;
  mode: 'electron' | 'web';
}

/** Calls: channel name (`domain:verb`) → function type. */
export interface ApiCalls {
  'app:info': () => Promise<AppInfo>;
  'capture:start': (req: CaptureRequest) => Promise<CaptureInfo>;
  'capture:stop': (req: { id: number }) => Promise<CaptureInfo>;
  'capture:list': () => Promise<CaptureInfo[]>;
  'requests:query': (q: RequestQuery) => Promise<RequestPage>;
  /** The assembled trace around a span; rejects with code `not_found` when nothing matches. */
  'trace:get': (q: TraceStart) => Promise<Trace>;
  'flows:query': (q: FlowQuery) => Promise<FlowPage>;
}

/** Events the core pushes to every renderer. */
export interface ApiEvents {
  'capture:updated': CaptureInfo;
  'spans:added': { captureId: number; count: number };
}

export type Channel = keyof ApiCalls;
export type EventName = keyof ApiEvents;

export const CHANNELS = [
  'app:info',
  'capture:start',
  'capture:stop',
  'capture:list',
  'requests:query',
  'trace:get',
  'flows:query',
] as const satisfies readonly Channel[];

export const EVENT_NAMES = ['capture:updated', 'spans:added'] as const satisfies readonly EventName[];

export function isChannel(name: unknown): name is Channel {
  return typeof name === 'string' && (CHANNELS as readonly string[]).includes(name);
}

/** The API object a renderer holds: calls plus a subscription to events. */
export type TapdeckApi = {
  [C in Channel]: (...args: Parameters<ApiCalls[C]>) => ReturnType<ApiCalls[C]>;
} & {
  on<E extends EventName>(event: E, listener: (payload: ApiEvents[E]) => void): () => void;
};

/** The core's side: handlers for every channel. */
export type ApiHandlers = { [C in Channel]: ApiCalls[C] };

/** Errors cross the bridge as `{ error: { code, message } }`; the client rethrows them. */
export interface ApiErrorBody {
  code: string;
  message: string;
}
