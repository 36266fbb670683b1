// The preload of the sandboxed renderer: builds the `TapdeckApi` object from the
// contract's channel lists with two small factories and exposes it as
// `window.tapdeck`. Nothing else of Electron reaches the page: no ipcRenderer, no
// IpcRendererEvent (listeners get the payload only).
//
// Sandboxed preloads cannot load ES modules or other files, so this is bundled into one
// CommonJS file (dist/main/electron/preload.cjs) by `vite build --mode preload`.

import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron';
import {
  CHANNELS,
  EVENT_NAMES,
  type ApiCalls,
  type ApiEvents,
  type Channel,
  type EventName,
  type TapdeckApi,
} from '../api/contract.ts';
import type { IpcReply } from './ipc.ts';

function invoker<C extends Channel>(channel: C): TapdeckApi[C] {
  return (async (...args: Parameters<ApiCalls[C]>) => {
    const reply = (await ipcRenderer.invoke(channel, ...args)) as IpcReply;
    if (!reply.ok) throw Object.assign(new Error(reply.error.message), { code: reply.error.code });
    return reply.value;
  }) as TapdeckApi[C];
}

function subscriber(): TapdeckApi['on'] {
  return <E extends EventName>(event: E, listener: (payload: ApiEvents[E]) => void) => {
    if (!(EVENT_NAMES as readonly string[]).includes(event)) throw new Error(`Tapdeck has no event named "${event}".`);
    const relay = (_e: IpcRendererEvent, payload: ApiEvents[E]): void => listener(payload);
    ipcRenderer.on(event, relay);
    return () => {
      ipcRenderer.removeListener(event, relay);
    };
  };
}

const api = {
  ...(Object.fromEntries(CHANNELS.map((c) => [c, invoker(c)])) as { [C in Channel]: TapdeckApi[C] }),
  on: subscriber(),
} satisfies TapdeckApi;

contextBridge.exposeInMainWorld('tapdeck', api);
