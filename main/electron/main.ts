// The Electron shell: one sandboxed window on the renderer, the core behind it.
// This file and preload.ts are the only ones that import `electron`.
//
// - The renderer is served from a privileged `app://tapdeck/` scheme (not file://), with
//   a strict CSP header on every response.
// - The window runs with contextIsolation, sandbox, no nodeIntegration, webSecurity on;
//   navigation, new windows, <webview> and permission requests are all refused.
// - `ipcMain.handle` is registered for the contract's CHANNELS only, and each call is
//   answered only when it comes from the main frame of the app's own window showing
//   app://tapdeck/ (trusted sender check).
// - Core events are forwarded to the window, one IPC channel per event name.
//
// Usage: electron dist/main/electron/main.js [--db FILE]

import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { app, BrowserWindow, dialog, protocol, session, type WebContents } from 'electron';
import { createCore, type Core } from '../core/core.ts';
import { RENDERER_DIR } from '../paths.ts';
import { defaultDataDir, newCaptureFilePath } from '../web/capture-file.ts';
import { rendererCsp } from '../web/csp.ts';
import { readStaticFile } from '../web/static-files.ts';
import { registerIpc } from './ipc.ts';

const SCHEME = 'app';
const APP_HOST = 'tapdeck';
const APP_ORIGIN = `${SCHEME}://${APP_HOST}`;
const PRELOAD = join(dirname(fileURLToPath(import.meta.url)), 'preload.cjs');

function argValue(name: string): string | undefined {
  const argv = process.argv;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === name) return argv[i + 1];
    if (a.startsWith(`${name}=`)) return a.slice(name.length + 1);
  }
  return undefined;
}

// Same data folder as web mode, so both find the same captures/.
app.setPath('userData', defaultDataDir());
app.enableSandbox();
protocol.registerSchemesAsPrivileged([
  { scheme: SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true } },
]);

let core: Core | null = null;
let mainWindow: BrowserWindow | null = null;

function lockDown(contents: WebContents): void {
  contents.setWindowOpenHandler(() => ({ action: 'deny' }));
  contents.on('will-navigate', (e) => e.preventDefault());
  contents.on('will-redirect', (e) => e.preventDefault());
  contents.on('will-attach-webview', (e) => e.preventDefault());
}

function serveRenderer(): void {
  const csp = rendererCsp();
  protocol.handle(SCHEME, async (req) => {
    const url = new URL(req.url);
    const file =
      url.host === APP_HOST && req.method === 'GET' ? await readStaticFile(RENDERER_DIR, url.pathname) : null;
    if (!file) return new Response('Not found', { status: 404, headers: { 'Content-Security-Policy': csp } });
    return new Response(new Uint8Array(file.body), {
      status: 200,
      headers: {
        'Content-Type': file.contentType,
        'Content-Security-Policy': csp,
        'X-Content-Type-Options': 'nosniff',
        'Cache-Control': 'no-cache',
      },
    });
  });
}

function openWindow(): BrowserWindow {
  const win = new BrowserWindow({
    width: 1440,
    height: 900,
    minWidth: 900,
    minHeight: 560,
    title: 'Tapdeck',
    show: false,
    backgroundColor: '#f6f7f9',
    webPreferences: {
      preload: PRELOAD,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      navigateOnDragDrop: false,
      spellcheck: false,
    },
  });
  win.once('ready-to-show', () => win.show());
  win.on('closed', () => {
    if (mainWindow === win) mainWindow = null;
  });
  void win.loadURL(`${APP_ORIGIN}/index.html`);
  return win;
}

app.on('web-contents-created', (_e, contents) => lockDown(contents));
app.on('window-all-closed', () => app.quit());

let shutDown = false;
app.on('before-quit', (e) => {
  if (shutDown || !core) return;
  e.preventDefault();
  shutDown = true;
  const c = core;
  core = null;
  void c
    .close()
    .catch((err: unknown) => console.error(`tapdeck: closing the capture file failed: ${(err as Error).message}`))
    .finally(() => app.quit());
});

async function main(): Promise<void> {
  await app.whenReady();
  const ses = session.defaultSession;
  ses.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));
  ses.setPermissionCheckHandler(() => false);
  ses.setDevicePermissionHandler(() => false);

  const given = argValue('--db');
  const dbPath = given ? resolve(given) : newCaptureFilePath(join(app.getPath('userData'), 'captures'));
  mkdirSync(dirname(dbPath), { recursive: true });
  core = await createCore({ dbPath, mode: 'electron' });

  serveRenderer();
  registerIpc(core, () => mainWindow, APP_ORIGIN);
  mainWindow = openWindow();
  app.on('activate', () => {
    if (!mainWindow) mainWindow = openWindow();
  });
}

main().catch((err: unknown) => {
  dialog.showErrorBox('Tapdeck cannot start', (err as Error).message ?? String(err));
  app.exit(1);
});
