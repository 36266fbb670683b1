import { createHmac, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  addHostKey,
  checkHostKey,
  hostId,
  keyTypeOf,
  parseKnownHosts,
  patternsMatch,
} from '../../../main/ssh/known-hosts.ts';

/** An ssh-ed25519 public key blob, as a server presents it. */
function ed25519Blob(): Buffer {
  const { publicKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const type = Buffer.from('ssh-ed25519');
  const len = (b: Buffer) => {
    const l = Buffer.alloc(4);
    l.writeUInt32BE(b.length);
    return l;
  };
  return Buffer.concat([len(type), type, len(raw), raw]);
}

const keyA = ed25519Blob();
const keyB = ed25519Blob();
const line = (host: string, key: Buffer) => `${host} ssh-ed25519 ${key.toString('base64')}`;

function hashed(name: string): string {
  const salt = randomBytes(20);
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;
}

describe('known_hosts', () => {
  it('reads the key type from the blob', () => {
    expect(keyTypeOf(keyA)).toBe('ssh-ed25519');
    expect(() => keyTypeOf(Buffer.from([0, 0, 1]))).toThrow(/too short/);
    expect(() => keyTypeOf(Buffer.from([0xff, 0, 0, 0, 1]))).toThrow(/malformed/);
  });

  it('names non-standard ports as [host]:port', () => {
    expect(hostId('10.0.0.5', 22)).toBe('10.0.0.5');
    expect(hostId('127.0.0.1', 2222)).toBe('[127.0.0.1]:2222');
  });

  it('accepts a matching key, on the default and on other ports', () => {
    expect(checkHostKey(line('gw1.example', keyA), 'gw1.example', 22, keyA)).toEqual({ status: 'known' });
    expect(checkHostKey(line('[127.0.0.1]:2222', keyA), '127.0.0.1', 2222, keyA)).toEqual({ status: 'known' });
    // a key recorded for port 22 does not vouch for another port
    expect(checkHostKey(line('127.0.0.1', keyA), '127.0.0.1', 2222, keyA)).toEqual({ status: 'unknown' });
  });

  it('reports a changed key with the line that holds the old one', () => {
    const text = `# comment\n${line('other', keyB)}\n${line('gw1,gw1.example', keyA)}\n`;
    expect(checkHostKey(text, 'gw1.example', 22, keyB)).toEqual({
      status: 'changed',
      line: 3,
      knownType: 'ssh-ed25519',
    });
  });

  it('matches hashed entries and wildcards, and honours negation', () => {
    expect(checkHostKey(line(hashed('[127.0.0.1]:2222'), keyA), '127.0.0.1', 2222, keyA)).toEqual({ status: 'known' });
    expect(checkHostKey(line(hashed('elsewhere'), keyA), '127.0.0.1', 2222, keyA)).toEqual({ status: 'unknown' });
    expect(patternsMatch('*.prod.example,!db*.prod.example', 'gw3.prod.example')).toBe(true);
    expect(patternsMatch('*.prod.example,!db*.prod.example', 'db1.prod.example')).toBe(false);
    expect(patternsMatch('gw?', 'gw1')).toBe(true);
    expect(patternsMatch('gw?', 'gw12')).toBe(false);
    expect(patternsMatch('a.b', 'aXb')).toBe(false);
  });

  it('refuses a revoked key even when a plain line also lists it', () => {
    const text = `@revoked * ssh-ed25519 ${keyA.toString('base64')}\n${line('gw1', keyA)}\n`;
    expect(checkHostKey(text, 'gw1', 22, keyA)).toEqual({ status: 'revoked', line: 1 });
  });

  it('ignores malformed lines and cert-authority lines instead of failing', () => {
    const text = `garbage\nhost-only\n${'x'.repeat(5000)} ssh-ed25519 !!!notbase64\n@cert-authority gw1 ssh-ed25519 ${keyA.toString('base64')}\n`;
    expect(parseKnownHosts(text)).toHaveLength(1);
    expect(checkHostKey(text, 'gw1', 22, keyA)).toEqual({ status: 'unknown' });
  });

  it('records a new key in a form OpenSSH reads back', () => {
    const dir = mkdtempSync(join(tmpdir(), 'td-kh-'));
    const file = join(dir, 'sub', 'known_hosts');
    addHostKey(file, '127.0.0.1', 2222, keyA);
    writeFileSync(file, readFileSync(file, 'utf8') + 'no-newline-at-end ssh-ed25519 ' + keyB.toString('base64'));
    addHostKey(file, 'gw1', 22, keyB);
    const text = readFileSync(file, 'utf8');
    expect(text.split('\n').filter(Boolean)).toHaveLength(3);
    expect(checkHostKey(text, '127.0.0.1', 2222, keyA)).toEqual({ status: 'known' });
    expect(checkHostKey(text, 'gw1', 22, keyB)).toEqual({ status: 'known' });
  });
});
