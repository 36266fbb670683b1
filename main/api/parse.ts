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

/** "nginx, 1234 ,openresty" → ["nginx", "1234", "openresty"] */
export function parseList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}
