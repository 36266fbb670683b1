// OpenSSH known_hosts: plain and hashed (`|1|salt|hmac`) host patterns, wildcards,
// negation, `[host]:port` for non-standard ports, and `@revoked` markers.
// `@cert-authority` lines are not trusted for plain host keys and are ignored.

import { createHmac, timingSafeEqual } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';

export type HostKeyVerdict =
  | { status: 'known' }
  | { status: 'unknown' }
  | { status: 'changed'; line: number; knownType: string }
  | { status: 'revoked'; line: number };

interface Entry {
  line: number;
  marker: '' | '@revoked' | '@cert-authority';
  patterns: string;
  keyType: string;
  key: Buffer;
}

/** The name OpenSSH records for a host: `host` on port 22, `[host]:port` otherwise. */
export function hostId(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** Reads the key type (e.g. `ssh-ed25519`) from an SSH public key blob. */
export function keyTypeOf(blob: Buffer): string {
  if (blob.length < 4) throw new Error('host key blob is too short');
  const n = blob.readUInt32BE(0);
  if (n > blob.length - 4 || n > 64) throw new Error('host key blob has a malformed type field');
  return blob.subarray(4, 4 + n).toString('ascii');
}

export function parseKnownHosts(text: string): Entry[] {
  const out: Entry[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let marker: Entry['marker'] = '';
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') marker = fields.shift() as Entry['marker'];
    const [patterns, keyType, b64] = fields;
    if (!patterns || !keyType || !b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return; // malformed line: skipped, as ssh does
    const key = Buffer.from(b64, 'base64');
    if (key.length === 0) return;
    out.push({ line: i + 1, marker, patterns, keyType, key });
  });
  return out;
}

function wildcardMatch(pattern: string, name: string): boolean {
  const re = new RegExp(
    '^' +
      pattern
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.') +
      '$',
    'i',
  );
  return re.test(name);
}

function hashedMatch(pattern: string, name: string): boolean {
  const parts = pattern.split('|'); // ['', '1', salt, hash]
  if (parts.length !== 4 || parts[1] !== '1') return false;
  const salt = Buffer.from(parts[2]!, 'base64');
  const want = Buffer.from(parts[3]!, 'base64');
  const got = createHmac('sha1', salt).update(name).digest();
  return want.length === got.length && timingSafeEqual(want, got);
}

/** Does a comma-separated pattern list match `name`? Negated patterns veto. */
export function patternsMatch(patterns: string, name: string): boolean {
  if (patterns.startsWith('|')) return hashedMatch(patterns, name);
  let matched = false;
  for (const p of patterns.split(',')) {
    if (p.startsWith('!')) {
      if (wildcardMatch(p.slice(1), name)) return false;
    } else if (wildcardMatch(p, name)) matched = true;
  }
  return matched;
}

export function checkHostKey(text: string, host: string, port: number, key: Buffer): HostKeyVerdict {
  const name = hostId(host, port);
  const type = keyTypeOf(key);
  const entries = parseKnownHosts(text).filter(
    (e) => e.marker !== '@cert-authority' && patternsMatch(e.patterns, name),
  );
  const revoked = entries.find((e) => e.marker === '@revoked' && e.key.equals(key));
  if (revoked) return { status: 'revoked', line: revoked.line };
  const plain = entries.filter((e) => e.marker === '');
  if (plain.some((e) => e.keyType === type && e.key.equals(key))) return { status: 'known' };
  const other = plain[0];
  if (other) return { status: 'changed', line: other.line, knownType: other.keyType };
  return { status: 'unknown' };
}

export function readKnownHosts(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

export function addHostKey(file: string, host: string, port: number, key: Buffer): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const existing = readKnownHosts(file);
  const sep = existing.length > 0 && !existing.endsWith('\n') ? '\n' : '';
  appendFileSync(file, `${sep}${hostId(host, port)} ${keyTypeOf(key)} ${key.toString('base64')}\n`, { mode: 0o600 });
}
