import { describe, expect, it } from 'vitest';
import { LineJoiner } from '../../../main/capture/log-lines.ts';

describe('collector stderr lines', () => {
  it('joins a message written in pieces into one line', () => {
    const j = new LineJoiner();
    // How eprintln! wrote "TLS: probing {path} ({functions}) for pid {pid}" over SSH.
    const pieces = [
      'tapdeck-collector: TLS: probing ',
      '/usr/lib/x86_64-linux-gnu/libssl.so.3',
      ' (',
      'SSL_read, SSL_write',
      ') for pid ',
      '16478',
      '\n',
    ];
    const out = pieces.flatMap((p) => j.push(p));
    expect(out).toEqual([
      'tapdeck-collector: TLS: probing /usr/lib/x86_64-linux-gnu/libssl.so.3 (SSL_read, SSL_write) for pid 16478',
    ]);
  });

  it('splits several lines in one chunk, keeps an unfinished one for later, flushes it at the end', () => {
    const j = new LineJoiner();
    expect(j.push('one\r\ntwo\n\nthr')).toEqual(['one', 'two']);
    expect(j.push('ee')).toEqual([]);
    expect(j.end()).toEqual(['three']);
    expect(j.end()).toEqual([]);
  });

  it('does not hold an endless line forever', () => {
    const j = new LineJoiner();
    expect(j.push('x'.repeat(20_000))).toEqual(['x'.repeat(20_000)]);
  });
});
