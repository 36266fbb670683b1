// Formatting and parsing helpers for the screens.

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** Local time with millisecond precision: 14:03:07.482 */
export function formatTime(us: number): string {
  const d = new Date(us / 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Local date and time, for tooltips: 2025-01-31 14:03:07.482 */
export function formatDateTime(us: number): string {
  const d = new Date(us / 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${formatTime(us)}`;
}

/** Microseconds as milliseconds: 0.412, 4.3, 29.4, 1,204 */
export function formatMs(us: number): string {
  const ms = us / 1000;
  if (ms < 1) return ms.toFixed(3);
  if (ms < 100) return ms.toFixed(1);
  return Math.round(ms).toLocaleString('en-US');
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Elapsed time: 42s, 3m07s, 1h02m */
export function formatElapsed(us: number): string {
  const s = Math.max(0, Math.floor(us / 1e6));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
}
