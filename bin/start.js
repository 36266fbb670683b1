#!/usr/bin/env node
// `npm start` (after `npm run build`): opens the desktop app, or, where Electron's
// binary is not installed (ELECTRON_SKIP_BINARY_DOWNLOAD), says so in one line and
// serves the same renderer in web mode instead, like `tapdeck serve`.
//
//   node bin/start.js [--db FILE] [--port N]     (--port applies to web mode only)

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);

/**
 * The Electron executable, or null when it is not installed. `require('electron')` is
 * only called once the binary is known to exist: when it is missing, that require
 * tries to download it, and this machine may have no internet.
 */
function electronBinary() {
  const require = createRequire(import.meta.url);
  let pkgDir;
  try {
    pkgDir = dirname(require.resolve('electron/package.json'));
  } catch {
    return null;
  }
  const override = process.env.ELECTRON_OVERRIDE_DIST_PATH;
  const pathFile = join(pkgDir, 'path.txt');
  const rel = existsSync(pathFile) ? readFileSync(pathFile, 'utf8').trim() : null;
  const expected = override ? join(override, rel || 'electron') : rel ? join(pkgDir, 'dist', rel) : null;
  if (!expected || !existsSync(expected)) return null;
  const found = require('electron');
  return typeof found === 'string' && existsSync(found) ? found : null;
}

function fail(message) {
  process.stderr.write(`tapdeck: ${message}\n`);
  process.exit(1);
}

const electron = electronBinary();

if (electron) {
  const main = join(root, 'dist', 'main', 'electron', 'main.js');
  if (!existsSync(main)) fail(`${main} is missing: run \`npm run build\` first.`);
  const env = { ...process.env };
  delete env.ELECTRON_RUN_AS_NODE;
  const child = spawn(electron, [main, ...args], { stdio: 'inherit', env });
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
  child.on('error', (err) => fail(`cannot start Electron (${electron}): ${err.message}`));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
} else {
  let opts;
  try {
    ({ values: opts } = parseArgs({
      args,
      options: { db: { type: 'string' }, port: { type: 'string' } },
      strict: true,
    }));
  } catch (err) {
    fail(`${err.message}. Usage: npm start -- [--db FILE] [--port N]`);
  }
  const port = opts.port === undefined ? undefined : Number(opts.port);
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
    fail(`--port must be a whole number from 1 to 65535 (got "${opts.port}").`);
  }
  const serveJs = join(root, 'dist', 'main', 'web', 'serve.js');
  if (!existsSync(serveJs)) fail(`${serveJs} is missing: run \`npm run build\` first.`);
  const { serveCommand } = await import(pathToFileURL(serveJs).href);
  try {
    await serveCommand({
      db: opts.db,
      port,
      out: () => undefined,
      onReady: (server) =>
        process.stdout.write(
          `Electron's binary is not installed (ELECTRON_SKIP_BINARY_DOWNLOAD); opening web mode instead: ${server.url}\n`,
        ),
    });
  } catch (err) {
    fail(err instanceof Error ? err.message : String(err));
  }
}
