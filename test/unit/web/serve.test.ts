// `serveCommand`: creates the capture file, prints the URL with its token, serves, and
// shuts down cleanly when asked.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { newCaptureFilePath } from '../../../main/web/capture-file.ts';
import { serveCommand } from '../../../main/web/serve.ts';
import type { WebServer } from '../../../main/web/server.ts';

const dir = mkdtempSync(join(tmpdir(), 'tapdeck-serve-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('serveCommand', () => {
  it('prints the URL, serves the API, and stops on abort', async () => {
    const db = join(dir, 'sub', 'capture.sqlite');
    const lines: string[] = [];
    const stop = new AbortController();
    let ready!: (s: WebServer) => void;
    const started = new Promise<WebServer>((r) => (ready = r));
    const done = serveCommand({
      db,
      out: (l) => lines.push(l),
      note: () => undefined,
      signal: stop.signal,
      onReady: ready,
      rendererDir: dir,
    });
    const server = await started;
    expect(lines).toEqual([`Tapdeck is serving at ${server.url}`]);
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]{43}$/);
    expect(existsSync(db)).toBe(true);
    const res = await fetch(`http://127.0.0.1:${server.port}/api/app:info`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${server.token}` },
      body: '[]',
    });
    expect(await res.json()).toMatchObject({ mode: 'web', dbPath: db });
    stop.abort();
    await done;
    await expect(fetch(`http://127.0.0.1:${server.port}/`)).rejects.toThrow();
  });

  it('says what to do when the port is taken', async () => {
    const stop = new AbortController();
    let ready!: (s: WebServer) => void;
    const started = new Promise<WebServer>((r) => (ready = r));
    const first = serveCommand({
      db: join(dir, 'a.sqlite'),
      out: () => undefined,
      note: () => undefined,
      signal: stop.signal,
      onReady: ready,
      rendererDir: dir,
    });
    const { port } = await started;
    await expect(
      serveCommand({ db: join(dir, 'b.sqlite'), port, out: () => undefined, note: () => undefined, rendererDir: dir }),
    ).rejects.toThrow(
      `Port ${port} on 127.0.0.1 is already in use: choose another with --port, or leave it out to get a free one.`,
    );
    stop.abort();
    await first;
  });

  it('names new capture files by local time, never reusing one', () => {
    const when = new Date(2025, 0, 31, 14, 3, 7);
    expect(newCaptureFilePath(dir, when)).toBe(join(dir, 'capture-20250131-140307.sqlite'));
  });
});
