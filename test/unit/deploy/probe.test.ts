import { describe, expect, it } from 'vitest';
import { checkProbe, kernelVersion, parseProbe, type NodeProbe } from '../../../main/deploy/probe.ts';
import { collectorCommand, collectorScript } from '../../../main/deploy/deploy.ts';

const out = (over: Record<string, string> = {}) =>
  Object.entries({
    os: 'Linux',
    arch: 'x86_64',
    kernel: '6.1.0-18-amd64',
    hostname: 'gw1',
    user: 'ops',
    btf: 'yes',
    priv: 'sudo',
    sha256sum: 'yes',
    ...over,
  })
    .map(([k, v]) => `${k}=${v}`)
    .join('\n');

describe('node probe', () => {
  it('parses the probe answer', () => {
    expect(parseProbe(out())).toEqual<NodeProbe>({
      hostname: 'gw1',
      arch: 'x86_64',
      kernel: '6.1.0-18-amd64',
      btf: true,
      privilege: 'sudo',
      user: 'ops',
      hasSha256sum: true,
    });
  });

  it('explains an incomplete answer and a non-Linux node', () => {
    expect(() => parseProbe('arch=x86_64\n')).toThrow(/lacks "os"/);
    expect(() => parseProbe(out({ os: 'FreeBSD' }))).toThrow(/runs FreeBSD, not Linux/);
  });

  it('reads kernel versions', () => {
    expect(kernelVersion('5.15.0-91-generic')).toEqual([5, 15]);
    expect(kernelVersion('weird')).toBeNull();
  });

  const check =
    (over: Record<string, string>, arches = ['x86_64']) =>
    () =>
      checkProbe(parseProbe(out(over)), arches);

  it('accepts a capable node', () => {
    expect(check({})).not.toThrow();
    expect(check({ priv: 'root' })).not.toThrow();
  });

  it('names each missing requirement and what to do', () => {
    expect(check({ priv: 'none' })).toThrow(/cannot run sudo without a password.*NOPASSWD/);
    expect(check({ btf: 'no' })).toThrow(/no \/sys\/kernel\/btf\/vmlinux.*CONFIG_DEBUG_INFO_BTF/);
    expect(check({ kernel: '5.4.0-150-generic' })).toThrow(/kernel 5.4.0-150-generic, older than 5.8/);
    expect(check({ arch: 'aarch64' })).toThrow(/is aarch64, and this Tapdeck has a collector only for x86_64/);
    expect(check({ sha256sum: 'no' })).toThrow(/no sha256sum/);
  });
});

describe('collector command', () => {
  const d = { dir: '/tmp/tapdeck.Ab12Cd34', binary: '/tmp/tapdeck.Ab12Cd34/tapdeck-collector', sha256: 'x', bytes: 1 };
  const p = parseProbe(out());
  it('runs through sudo -n without a pty and removes its directory on exit', () => {
    const cmd = collectorCommand(d, p, { processes: ['nginx', "we'ird"], durationSec: 30 });
    expect(cmd).toContain('sudo -n');
    expect(cmd).toContain('--duration 30s');
    expect(cmd).toMatch(/trap .*rm -rf .*tapdeck\.Ab12Cd34/);
    expect(cmd).toContain('--process');
  });
  it('survives a dropped channel long enough to clean up: SIGPIPE ignored, EXIT trap set', () => {
    const script = collectorScript(d, p, { processes: [], durationSec: 30 });
    expect(script).toMatch(/^trap '' PIPE; trap 'rm -rf '\/tmp\/tapdeck\.Ab12Cd34'' EXIT HUP TERM INT; sudo -n /);
    expect(collectorCommand(d, p, { processes: [], durationSec: 30 })).toBe(`sh -c '${script.replace(/'/g, "'\\''")}'`);
  });
  it('passes the OTLP receiver address, quoted, only when one is given', () => {
    expect(collectorScript(d, p, { processes: [], durationSec: 30, otlpListen: '198.18.0.1:4318' })).toContain(
      "--duration 30s --otlp-listen '198.18.0.1:4318'",
    );
    expect(collectorScript(d, p, { processes: [], durationSec: 30, otlpListen: 'off' })).toContain(
      "--otlp-listen 'off'",
    );
    expect(collectorScript(d, p, { processes: [], durationSec: 30 })).not.toContain('--otlp-listen');
  });
  it('does not use sudo when connected as root', () => {
    expect(collectorCommand(d, { ...p, privilege: 'root' }, { processes: [], durationSec: 5 })).not.toContain('sudo');
  });
});
