// The syntax of what users type, in the CLI and in the capture form alike. Pure
// functions with no Node imports: the renderer imports them too.

/** `30`, `30s`, `500ms`, `5m`, `1h` → seconds; anything else → null. */
export function parseDurationSec(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/i.exec(text.trim());
  if (!m) return null;
  const mult = { ms: 0.001, s: 1, m: 60, h: 3600 }[(m[2] ?? 's').toLowerCase() as 'ms' | 's' | 'm' | 'h'];
  const sec = Number(m[1]) * mult;
  return sec > 0 ? sec : null;
}

export interface TargetParts {
  user: string | undefined;
  host: string;
  /** Written port, unchecked (may be out of range). */
  port: number | undefined;
}

/** `[user@]host[:port]`, host possibly a bracketed IPv6 address → its parts, or null. */
export function splitTarget(text: string): TargetParts | null {
  const m = /^(?:([^@\s]+)@)?(\[[0-9a-fA-F:.]+\]|[^:@\s[\]/]+)(?::(\d+))?$/.exec(text.trim());
  if (!m) return null;
  return { user: m[1], host: m[2]!.replace(/^\[(.*)\]$/, '$1'), port: m[3] ? Number(m[3]) : undefined };
}

/**
 * The collector's OTLP receiver address: `IP:PORT` (IPv6 in brackets) or `off` →
 * the same text, normalised; anything else → null. Host names are refused: the
 * collector binds an address.
 */
export function parseOtlpListen(text: string): string | null {
  const t = text.trim();
  if (/^off$/i.test(t)) return 'off';
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):(\d{1,5})$/.exec(t);
  if (!m) return null;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return null;
  if (!m[1]!.startsWith('[') && m[1]!.split('.').some((o) => Number(o) > 255)) return null;
  return `${m[1]}:${port}`;
}

/** "nginx, 1234 ,openresty" → ["nginx", "1234", "openresty"] */
export function parseList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}
