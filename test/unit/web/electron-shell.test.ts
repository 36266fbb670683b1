// The Electron shell (main/electron/main.ts, ipc.ts) against a stand-in `electron`
// module, since the Electron binary is not installed where tests run. It checks what
// the shell asks of Electron: the window's web preferences, the handlers it registers
// and whom they answer, the app:// protocol and its CSP, and the lock-down of every
// web contents. Whether Electron honours those settings is Electron's business.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CHANNELS } from '../../../main/api/contract.ts';
import type * as CoreModule from '../../../main/core/core.ts';
import type { Core } from '../../../main/core/core.ts';
import type * as PathsModule from '../../../main/paths.ts';
import type { IpcReply } from '../../../main/electron/ipc.ts';

type Listener = (...args: unknown[]) => unknown;

const fake = vi.hoisted(() => {
  const appListeners = new Map<string, Listener[]>();
  const handlers = new Map<string, Listener>();
  const windows: {
    options: Record<string, unknown>;
    loaded: string[];
    sent: unknown[][];
    webContents: Record<string, unknown>;
  }[] = [];
  let protocolHandler: ((req: Request) => Promise<Response>) | null = null;
  const privileged: unknown[] = [];
  const permission: { request?: Listener; check?: Listener } = {};
  let quit = 0;

  class BrowserWindow {
    options: Record<string, unknown>;
    loaded: string[] = [];
    sent: unknown[][] = [];
    webContents: Record<string, unknown>;
    constructor(options: Record<string, unknown>) {
      this.options = options;
      this.webContents = {
        id: 7,
        mainFrame: { processId: 3, routingId: 1, url: 'app://tapdeck/index.html' },
        send: (...a: unknown[]) => this.sent.push(a),
      };
      windows.push(this);
    }
    loadURL(url: string) {
      this.loaded.push(url);
      return Promise.resolve();
    }
    once() {}
    on() {}
    show() {}
    isDestroyed() {
      return false;
    }
  }

  const electron = {
    app: {
      setPath: () => undefined,
      getPath: () => '/nonexistent',
      enableSandbox: () => undefined,
      whenReady: () => Promise.resolve(),
      on: (event: string, l: Listener) => appListeners.set(event, [...(appListeners.get(event) ?? []), l]),
      quit: () => void quit++,
      exit: () => undefined,
    },
    BrowserWindow,
    dialog: { showErrorBox: (title: string, msg: string) => console.error(title, msg) },
    ipcMain: {
      handle: (channel: string, l: Listener) => handlers.set(channel, l),
      removeHandler: (channel: string) => handlers.delete(channel),
    },
    protocol: {
      registerSchemesAsPrivileged: (s: unknown[]) => privileged.push(...s),
      handle: (_scheme: string, h: (req: Request) => Promise<Response>) => (protocolHandler = h),
    },
    session: {
      defaultSession: {
        setPermissionRequestHandler: (l: Listener) => (permission.request = l),
        setPermissionCheckHandler: (l: Listener) => (permission.check = l),
        setDevicePermissionHandler: () => undefined,
      },
    },
  };
  return {
    electron,
    appListeners,
    handlers,
    windows,
    privileged,
    permission,
    protocol: () => protocolHandler,
    quits: () => quit,
  };
});

vi.mock('electron', () => ({ ...fake.electron, default: fake.electron }));

// A renderer folder of the test's own, so the test does not depend on a build.
const renderer = await vi.hoisted(async () => {
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tapdeck-shell-app-'));
  fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>Tapdeck</title>');
  return { dir };
});
vi.mock('../../../main/paths.ts', async (importOriginal) => ({
  ...(await importOriginal<typeof PathsModule>()),
  RENDERER_DIR: renderer.dir,
}));

// The real core, kept where the test can reach its event bus.
const shell = vi.hoisted(() => ({ core: null as Core | null }));
vi.mock('../../../main/core/core.ts', async (importOriginal) => {
  const real = await importOriginal<typeof CoreModule>();
  return {
    ...real,
    createCore: async (opts: Parameters<typeof real.createCore>[0]) => (shell.core = await real.createCore(opts)),
  };
});

const dir = mkdtempSync(join(tmpdir(), 'tapdeck-shell-'));

beforeAll(async () => {
  process.argv.push('--db', join(dir, 'capture.sqlite'));
  await import('../../../main/electron/main.ts');
  await vi.waitFor(() => expect(fake.windows).toHaveLength(1), { timeout: 10_000 });
});

afterAll(async () => {
  const beforeQuit = fake.appListeners.get('before-quit')?.[0];
  beforeQuit?.({ preventDefault: () => undefined });
  await vi.waitFor(() => expect(fake.quits()).toBe(1), { timeout: 10_000 });
  rmSync(dir, { recursive: true, force: true });
  rmSync(renderer.dir, { recursive: true, force: true });
  process.argv.splice(process.argv.indexOf('--db'), 2);
});

const win = () => fake.windows[0]!;
const invoke = async (channel: string, sender: { id: number; frame: object | null }, ...args: unknown[]) =>
  (await fake.handlers.get(channel)!({ sender: { id: sender.id }, senderFrame: sender.frame }, ...args)) as IpcReply;
const ownFrame = { processId: 3, routingId: 1, url: 'app://tapdeck/index.html' };

describe('Electron shell', () => {
  it('opens a sandboxed, isolated window with a bundled preload, on the app:// scheme', () => {
    const prefs = win().options['webPreferences'] as Record<string, unknown>;
    expect(prefs).toMatchObject({
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
    });
    expect(String(prefs['preload'])).toMatch(/preload\.cjs$/);
    expect(win().loaded).toEqual(['app://tapdeck/index.html']);
    expect(fake.privileged).toEqual([
      { scheme: 'app', privileges: { standard: true, secure: true, supportFetchAPI: true } },
    ]);
  });

  it('registers handlers for the contract channels and nothing else', () => {
    expect([...fake.handlers.keys()].sort()).toEqual([...CHANNELS].sort());
  });

  it("answers the app's own main frame", async () => {
    const reply = await invoke('app:info', { id: 7, frame: ownFrame });
    expect(reply).toEqual({
      ok: true,
      value: expect.objectContaining({ mode: 'electron', dbPath: join(dir, 'capture.sqlite') }),
    });
    const err = await invoke('capture:stop', { id: 7, frame: ownFrame }, { id: 5 });
    expect(err).toEqual({ ok: false, error: { code: 'Error', message: 'There is no capture 5 in this file.' } });
  });

  it('refuses other web contents, subframes and foreign pages', async () => {
    const refused = { ok: false, error: expect.objectContaining({ code: 'untrusted_sender' }) };
    expect(await invoke('app:info', { id: 8, frame: ownFrame })).toEqual(refused);
    expect(await invoke('app:info', { id: 7, frame: { ...ownFrame, routingId: 2 } })).toEqual(refused);
    expect(await invoke('app:info', { id: 7, frame: { ...ownFrame, url: 'https://evil.example/' } })).toEqual(refused);
    expect(await invoke('app:info', { id: 7, frame: { ...ownFrame, url: 'app://other/index.html' } })).toEqual(refused);
    expect(await invoke('app:info', { id: 7, frame: null })).toEqual(refused);
  });

  it('serves the renderer with a strict CSP and nothing outside it', async () => {
    const handle = fake.protocol()!;
    const index = await handle(new Request('app://tapdeck/index.html'));
    expect(index.status).toBe(200);
    expect(await index.text()).toContain('<title>Tapdeck</title>');
    expect(index.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(index.headers.get('content-security-policy')).not.toContain('unsafe');
    expect((await handle(new Request('app://tapdeck/../../package.json'))).status).toBe(404);
    expect((await handle(new Request('app://tapdeck/%2e%2e/%2e%2e/package.json'))).status).toBe(404);
    expect((await handle(new Request('app://elsewhere/index.html'))).status).toBe(404);
  });

  it('forwards core events to the window', () => {
    win().sent.length = 0;
    shell.core!.events.emit('spans:added', { captureId: 1, count: 3 });
    expect(win().sent).toEqual([['spans:added', { captureId: 1, count: 3 }]]);
  });

  it('denies new windows, navigation, webviews and permissions', () => {
    const created = fake.appListeners.get('web-contents-created')![0]!;
    const on = new Map<string, Listener>();
    let openHandler: Listener | null = null;
    created(
      {},
      { setWindowOpenHandler: (h: Listener) => (openHandler = h), on: (ev: string, l: Listener) => on.set(ev, l) },
    );
    expect(openHandler!({ url: 'https://evil.example/' })).toEqual({ action: 'deny' });
    for (const ev of ['will-navigate', 'will-redirect', 'will-attach-webview']) {
      const e = {
        prevented: false,
        preventDefault() {
          this.prevented = true;
        },
      };
      on.get(ev)!(e);
      expect(e.prevented, ev).toBe(true);
    }
    let granted: boolean | null = null;
    fake.permission.request!({}, 'media', (ok: boolean) => (granted = ok));
    expect(granted).toBe(false);
    expect(fake.permission.check!({}, 'clipboard-read')).toBe(false);
  });
});
