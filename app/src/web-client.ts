// The API over the web bridge (main/web/server.ts), for the renderer in a browser:
// calls are `POST /api/<channel>` with a JSON array of arguments, events come over one
// WebSocket at /events. Built from the contract's CHANNELS list, so it has the same
// shape as the preload's `window.tapdeck`.

import type { ApiCalls, ApiErrorBody, ApiEvents, Channel, EventName, TapdeckApi } from '../../main/api/contract.ts';
// The contract's channel list: the client is derived from it, not written again.
import { CHANNELS } from '../../main/api/contract.ts';

/** An error from the core or the bridge; `message` is a sentence for the user. */
export class ApiError extends Error {
  override name = 'ApiError';
  readonly code: string;
  readonly status: number;

  constructor(body: ApiErrorBody, status: number) {
    super(body.message);
    this.code = body.code;
    this.status = status;
  }
}

export interface WebClientOptions {
  /** http://127.0.0.1:PORT */
  origin: string;
  token: string;
}

export interface WebClient {
  api: TapdeckApi;
  /** Called when the event stream comes back after a drop (events may have been missed). */
  onReconnect(listener: () => void): () => void;
}

const UNREACHABLE =
  "Tapdeck's local server does not answer (it may have been stopped): start `tapdeck serve` again and open the URL it prints.";

export function createWebClient({ origin, token }: WebClientOptions): WebClient {
  async function post(channel: Channel, args: unknown[]): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${origin}/api/${channel}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify(args),
        cache: 'no-store',
      });
    } catch {
      throw new ApiError({ code: 'unreachable', message: UNREACHABLE }, 0);
    }
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      throw new ApiError(
        { code: 'bad_response', message: `Tapdeck's local server sent an unreadable answer (HTTP ${res.status}).` },
        res.status,
      );
    }
    if (!res.ok) {
      const error = (body as { error?: ApiErrorBody } | null)?.error;
      throw new ApiError(
        error ?? { code: 'http_error', message: `Tapdeck's local server answered HTTP ${res.status}.` },
        res.status,
      );
    }
    return body;
  }

  function invoker<C extends Channel>(channel: C): TapdeckApi[C] {
    return ((...args: Parameters<ApiCalls[C]>) => post(channel, args)) as TapdeckApi[C];
  }

  // ---- events: one WebSocket, opened on the first subscription, reconnecting ----
  const listeners = new Map<EventName, Set<(payload: never) => void>>();
  const reconnectListeners = new Set<() => void>();
  let socket: WebSocket | null = null;
  let retryMs = 500;
  /** The stream broke (not closed by us): events may have been missed. */
  let dropped = false;
  let retryTimer: ReturnType<typeof setTimeout> | null = null;
  let idleTimer: ReturnType<typeof setTimeout> | null = null;

  const wanted = (): boolean => [...listeners.values()].some((s) => s.size > 0);

  function connect(): void {
    if (socket || retryTimer) return;
    const ws = new WebSocket(`${origin.replace(/^http/, 'ws')}/events?token=${encodeURIComponent(token)}`);
    socket = ws;
    ws.onopen = () => {
      retryMs = 500;
      if (dropped) for (const l of reconnectListeners) l();
      dropped = false;
    };
    ws.onmessage = (m: MessageEvent<string>) => {
      let msg: { event: EventName; payload: unknown };
      try {
        msg = JSON.parse(m.data) as typeof msg;
      } catch {
        return;
      }
      for (const l of listeners.get(msg.event) ?? []) (l as (p: unknown) => void)(msg.payload);
    };
    ws.onclose = () => {
      if (socket !== ws) return;
      socket = null;
      dropped = true;
      if (!wanted()) return;
      retryTimer = setTimeout(() => {
        retryTimer = null;
        connect();
      }, retryMs);
      retryMs = Math.min(retryMs * 2, 5_000);
    };
  }

  /** Closes the stream once nobody has listened for a moment (not on every re-mount). */
  function releaseSoon(): void {
    if (idleTimer) return;
    idleTimer = setTimeout(() => {
      idleTimer = null;
      if (wanted()) return;
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = null;
      const ws = socket;
      socket = null;
      dropped = false;
      if (ws) {
        ws.onclose = null;
        ws.close();
      }
    }, 1_000);
  }

  const on: TapdeckApi['on'] = <E extends EventName>(event: E, listener: (payload: ApiEvents[E]) => void) => {
    let set = listeners.get(event);
    if (!set) listeners.set(event, (set = new Set()));
    set.add(listener);
    connect();
    return () => {
      set.delete(listener);
      if (!wanted()) releaseSoon();
    };
  };

  const api = {
    ...(Object.fromEntries(CHANNELS.map((c) => [c, invoker(c)])) as { [C in Channel]: TapdeckApi[C] }),
    on,
  } satisfies TapdeckApi;

  return {
    api,
    onReconnect(listener) {
      reconnectListeners.add(listener);
      return () => reconnectListeners.delete(listener);
    },
  };
}
