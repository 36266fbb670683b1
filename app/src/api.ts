// The renderer's one API object. In the Electron window the preload has put it on
// `window.tapdeck`; in a browser (web mode) it is built over HTTP and WebSocket, with
// the token taken from the page's `?token=` (then kept in sessionStorage and removed
// from the address bar, so it does not linger in history or screenshots).

import type { TapdeckApi } from '../../main/api/contract.ts';
import { createWebClient } from './web-client.ts';

declare global {
  interface Window {
    tapdeck?: TapdeckApi;
  }
}

const TOKEN_KEY = 'tapdeck.token';

function takeToken(): string {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get('token');
  if (fromUrl) {
    try {
      sessionStorage.setItem(TOKEN_KEY, fromUrl);
    } catch {
      return fromUrl; // storage disabled: keep it in the URL
    }
    url.searchParams.delete('token');
    window.history.replaceState(null, '', url.pathname + url.search + url.hash);
    return fromUrl;
  }
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? '';
  } catch {
    return '';
  }
}

const web = window.tapdeck ? null : createWebClient({ origin: window.location.origin, token: takeToken() });

export const api: TapdeckApi = window.tapdeck ?? web!.api;

/** Web mode only: called when the event stream reconnects (events may have been missed). */
export function onReconnect(listener: () => void): () => void {
  return web ? web.onReconnect(listener) : () => undefined;
}
