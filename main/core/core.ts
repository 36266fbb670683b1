// The core: the API handlers over one capture file. Electron's main process, the web
// bridge and the CLI all build on this; it runs in plain Node.

import type { ApiHandlers, AppInfo, CaptureInfo } from '../api/contract.ts';
import { startCapture, type CaptureHandle } from '../capture/session.ts';
import { VERSION } from '../paths.ts';
import { Store } from '../store/store.ts';
import { EventBus } from './events.ts';
import { parseTraceStart } from '../trace/start.ts';

export interface CoreOptions {
  dbPath: string;
  mode: AppInfo['mode'];
}

export interface Core {
  handlers: ApiHandlers;
  events: EventBus;
  store: Store;
  close(): Promise<void>;
}

export async function createCore(opts: CoreOptions): Promise<Core> {
  const store = await Store.open(opts.dbPath);
  const events = new EventBus();
  const running = new Map<number, CaptureHandle>();

  const handlers: ApiHandlers = {
    'app:info': () => Promise.resolve({ version: VERSION, dbPath: opts.dbPath, mode: opts.mode }),
    'capture:start': async (req) => {
      const handle = await startCapture({ ...req, store, events });
      running.set(handle.id, handle);
      void handle.done.finally(() => running.delete(handle.id));
      return handle.info();
    },
    'capture:stop': async ({ id }) => {
      const handle = running.get(id);
      if (handle) return handle.stop();
      const info = await store.getCapture(id);
      if (!info) throw new Error(`There is no capture ${id} in this file.`);
      return info;
    },
    'capture:list': () => store.listCaptures(),
    'requests:query': (q) => store.querySpans(q),
    'trace:get': (q) => store.trace(parseTraceStart(q)),
    'flows:query': (q) => store.queryFlows(q),
  };

  return {
    handlers,
    events,
    store,
    async close() {
      const stops: Promise<CaptureInfo>[] = [...running.values()].map((h) => h.stop());
      await Promise.allSettled(stops);
      await store.close();
    },
  };
}
