// Where the app's own files are, whether it runs from TypeScript sources, from the
// compiled dist/ or from a packaged app.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(start: string): string {
  let dir = start;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'tapdeck') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`Cannot find Tapdeck's package.json above ${start}`);
    dir = up;
  }
}

/** The package root: the folder holding package.json. */
export const APP_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));

export const VERSION = (JSON.parse(readFileSync(join(APP_ROOT, 'package.json'), 'utf8')) as { version: string })
  .version;

/** The built renderer (index.html and assets). */
export const RENDERER_DIR = join(APP_ROOT, 'dist', 'app');
