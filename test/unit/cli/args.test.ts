import { describe, expect, it } from 'vitest';
import { parseDurationSec, parseList, parseOtlpListen, splitTarget } from '../../../main/api/parse.ts';
import { parseDuration } from '../../../main/cli/index.ts';
import { parseTarget } from '../../../main/ssh/connect.ts';

describe('CLI arguments', () => {
  it('parses targets', () => {
    expect(parseTarget('ops@10.0.0.5')).toEqual({ user: 'ops', host: '10.0.0.5', port: 22 });
    expect(parseTarget('tdlab@127.0.0.1:2222')).toEqual({ user: 'tdlab', host: '127.0.0.1', port: 2222 });
    expect(parseTarget('ops@[::1]:2200')).toEqual({ user: 'ops', host: '::1', port: 2200 });
    expect(parseTarget('gw1').host).toBe('gw1');
  });
  it('explains a bad target', () => {
    expect(() => parseTarget('a@b@c')).toThrow(/write \[user@\]host\[:port\]/);
    expect(() => parseTarget('h:99999')).toThrow(/out of range/);
  });
  it('parses durations', () => {
    expect(parseDuration('30')).toBe(30);
    expect(parseDuration('45s')).toBe(45);
    expect(parseDuration('5m')).toBe(300);
    expect(parseDuration('1h')).toBe(3600);
    expect(() => parseDuration('soon')).toThrow(/write e.g. 30s/);
  });
  it('refuses a capture longer than the 1h hard maximum, with what to do', () => {
    expect(parseDuration('60m')).toBe(3600);
    expect(() => parseDuration('2h')).toThrow(/"2h" is longer than the 1h maximum.*several runs of 1h or less/);
    expect(() => parseDuration('3601')).toThrow(/longer than the 1h maximum/);
    expect(() => parseDuration('61m')).toThrow(/longer than the 1h maximum/);
  });
});

describe('shared input syntax (CLI and capture form)', () => {
  it('reads durations with units, and rejects zero and words', () => {
    expect(parseDurationSec('500ms')).toBe(0.5);
    expect(parseDurationSec(' 2M ')).toBe(120);
    expect(parseDurationSec('1.5h')).toBe(5400);
    expect(parseDurationSec('0s')).toBeNull();
    expect(parseDurationSec('5 minutes')).toBeNull();
  });
  it('splits targets without filling defaults', () => {
    expect(splitTarget('gw-1')).toEqual({ user: undefined, host: 'gw-1', port: undefined });
    expect(splitTarget('root@[fe80::1]:22')).toEqual({ user: 'root', host: 'fe80::1', port: 22 });
    expect(splitTarget('http://gw-1/')).toBeNull();
  });
  it('reads OTLP receiver addresses', () => {
    expect(parseOtlpListen('198.18.0.1:4318')).toBe('198.18.0.1:4318');
    expect(parseOtlpListen(' 0.0.0.0:4318 ')).toBe('0.0.0.0:4318');
    expect(parseOtlpListen('[::1]:4318')).toBe('[::1]:4318');
    expect(parseOtlpListen('OFF')).toBe('off');
    for (const bad of ['4318', 'localhost:4318', '1.2.3.4', '1.2.3.4:0', '1.2.3.4:70000', '300.1.1.1:4318', ''])
      expect(parseOtlpListen(bad), bad).toBeNull();
  });
  it('splits comma lists', () => {
    expect(parseList(' nginx, 1234 ,,openresty ')).toEqual(['nginx', '1234', 'openresty']);
  });
});
