// Where a new capture file goes when the user does not name one (`--db`): a fresh,
// timestamped file in the app's data folder, the same folder in web mode and in the
// desktop app (main/electron/main.ts points Electron's userData at it).

import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The per-user data folder: ~/.config/tapdeck, ~/Library/Application Support/Tapdeck, %APPDATA%\Tapdeck. */
export function defaultDataDir(
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
): string {
  if (platform === 'darwin') return join(homedir(), 'Library', 'Application Support', 'Tapdeck');
  if (platform === 'win32') return join(env['APPDATA'] ?? join(homedir(), 'AppData', 'Roaming'), 'Tapdeck');
  return join(env['XDG_CONFIG_HOME'] || join(homedir(), '.config'), 'tapdeck');
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** A path in `dir` that does not exist yet: capture-20250131-142501.sqlite (local time). */
export function newCaptureFilePath(dir: string, now: Date = new Date()): string {
  const stamp = `${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}${pad(now.getSeconds())}`;
  for (let i = 1; ; i++) {
    const file = join(dir, `capture-${stamp}${i === 1 ? '' : `-${i}`}.sqlite`);
    if (!existsSync(file)) return file;
  }
}
