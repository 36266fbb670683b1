// `tapdeck serve`: the app in a browser. Opens (or creates) a capture file, serves the
// renderer and the typed API on 127.0.0.1 with a random token, prints the URL, and
// shuts down cleanly on SIGINT/SIGTERM. The CLI (main/cli) and `npm start`'s web-mode
// fallback (bin/start.js) both call `serveCommand`.

import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createCore } from '../core/core.ts';
import { RENDERER_DIR } from '../paths.ts';
import { defaultDataDir, newCaptureFilePath } from './capture-file.ts';
import { startWebServer, type WebServer } from './server.ts';

export interface ServeOptions {
  /** The capture file; by default a new one in the data folder's captures/. */
  db?: string;
  /** By default a free port chosen by the system. */
  port?: number;
  /** Where the URL line goes (stdout by default). */
  out?: (line: string) => void;
  /** Where other notes go (stderr by default). */
  note?: (line: string) => void;
  /** Stops the server as SIGINT/SIGTERM do (tests, embedding). */
  signal?: AbortSignal;
  /** Called once serving, with the running server. */
  onReady?: (server: WebServer) => void;
  /** Served renderer; dist/app by default. */
  rendererDir?: string;
}

/**
 * Serves until SIGINT, SIGTERM or `signal`, then closes the server and the capture
 * file. Resolves after that clean shutdown; rejects (with a sentence for the user) if
 * it cannot start.
 */
export async function serveCommand(opts: ServeOptions = {}): Promise<void> {
  const out = opts.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const note = opts.note ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (opts.port !== undefined && (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535)) {
    throw new Error(`--port must be a whole number from 1 to 65535 (got ${opts.port}).`);
  }

  const dbPath = opts.db ? resolve(opts.db) : newCaptureFilePath(join(defaultDataDir(), 'captures'));
  mkdirSync(dirname(dbPath), { recursive: true });

  const core = await createCore({ dbPath, mode: 'web' });
  let server: WebServer;
  try {
    server = await startWebServer({
      core,
      host: '127.0.0.1',
      rendererDir: opts.rendererDir ?? RENDERER_DIR,
      ...(opts.port !== undefined ? { port: opts.port } : {}),
    });
  } catch (err) {
    await core.close().catch(() => undefined);
    throw err;
  }

  note(`Tapdeck web mode, capture file ${dbPath}`);
  out(`Tapdeck is serving at ${server.url}`);
  note(
    'Open that URL in a browser on this machine; its token grants access to the capture, keep it private. Ctrl+C stops.',
  );
  opts.onReady?.(server);

  await new Promise<void>((done) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      opts.signal?.removeEventListener('abort', stop);
      done();
    };
    if (opts.signal?.aborted) return stop();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    opts.signal?.addEventListener('abort', stop, { once: true });
  });

  note('Tapdeck is stopping: closing the server and the capture file…');
  await server.close();
  await core.close();
}
