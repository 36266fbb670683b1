// The shell's IPC: handlers for the contract's CHANNELS only, each answering only a
// trusted sender (GitHub Desktop's trusted-ipc-sender, Electron Fiddle's ipc.ts), and
// core events forwarded to the window. The only file of the shell that touches ipcMain.

import { ipcMain, type BrowserWindow, type IpcMainInvokeEvent } from 'electron';
import { CHANNELS, type ApiErrorBody } from '../api/contract.ts';
import type { Core } from '../core/core.ts';
import { toErrorBody } from '../web/errors.ts';

/**
 * What a handler returns to the preload: the value, or the error body. Errors travel
 * as data because Electron rewrites the message of a thrown error ("Error invoking
 * remote method …"); the user must read the core's sentence unchanged.
 */
export type IpcReply = { ok: true; value: unknown } | { ok: false; error: ApiErrorBody };

/** Whether `url` is on the app's origin. Compares scheme and host: for a custom scheme
 * like app://, WHATWG `URL.origin` is the opaque "null". */
export function isAppUrl(url: string, appOrigin: string): boolean {
  try {
    const u = new URL(url);
    const o = new URL(appOrigin);
    return u.protocol === o.protocol && u.host === o.host && u.username === '' && u.password === '';
  } catch {
    return false;
  }
}

/** Only the main frame of the app's own window, showing the app's own origin. */
export function isTrustedSender(e: IpcMainInvokeEvent, win: BrowserWindow | null, appOrigin: string): boolean {
  if (!win || win.isDestroyed() || e.sender.id !== win.webContents.id) return false;
  const frame = e.senderFrame;
  const top = win.webContents.mainFrame;
  if (!frame || frame.processId !== top.processId || frame.routingId !== top.routingId) return false;
  return isAppUrl(frame.url, appOrigin);
}

/** Registers one handler per channel of the contract and forwards core events. */
export function registerIpc(core: Core, getWindow: () => BrowserWindow | null, appOrigin: string): () => void {
  for (const channel of CHANNELS) {
    ipcMain.handle(channel, async (e, ...args: unknown[]): Promise<IpcReply> => {
      if (!isTrustedSender(e, getWindow(), appOrigin)) {
        return {
          ok: false,
          error: {
            code: 'untrusted_sender',
            message: 'Tapdeck refused a call from a page that is not its own window.',
          },
        };
      }
      try {
        const handler = core.handlers[channel] as (...a: unknown[]) => Promise<unknown>;
        return { ok: true, value: await handler(...args) };
      } catch (err) {
        return { ok: false, error: toErrorBody(err) };
      }
    });
  }
  const offEvents = core.events.onAny((event, payload) => {
    const win = getWindow();
    if (win && !win.isDestroyed()) win.webContents.send(event, payload);
  });
  return () => {
    offEvents();
    for (const channel of CHANNELS) ipcMain.removeHandler(channel);
  };
}
