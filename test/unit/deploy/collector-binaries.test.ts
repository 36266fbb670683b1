// The collectors Tapdeck uploads: one per node architecture, found by the node's
// `uname -m`, each an ELF for that architecture needing glibc 2.17 at most and no shared
// library beyond glibc's (remote-collector/scripts/check-glibc.sh, objdump -T). The
// aarch64 one really runs, under qemu-user (Debian's qemu-user-static with the arm64
// glibc of libc6-arm64-cross): no aarch64 machine exists here. Needs the builds of
// `npm run build:collector` (npm test runs it first).

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { collectorCandidates, findCollector } from '../../../main/deploy/deploy.ts';
import { APP_ROOT } from '../../../main/paths.ts';

const CHECK = join(APP_ROOT, 'remote-collector', 'scripts', 'check-glibc.sh');
const portable = (arch: string) =>
  join(APP_ROOT, 'remote-collector', 'target', `${arch}-unknown-linux-gnu`, 'release', 'tapdeck-collector');

function need(path: string): string {
  if (!existsSync(path)) throw new Error(`${path} is missing: run npm run build:collector`);
  return path;
}

describe('collector lookup by node architecture', () => {
  const saved = process.env['TAPDECK_COLLECTOR_DIR'];
  afterEach(() => {
    if (saved === undefined) delete process.env['TAPDECK_COLLECTOR_DIR'];
    else process.env['TAPDECK_COLLECTOR_DIR'] = saved;
  });

  it('uploads the portable build matching uname -m', () => {
    delete process.env['TAPDECK_COLLECTOR_DIR'];
    expect(findCollector('aarch64')).toBe(need(portable('aarch64')));
    expect(findCollector('x86_64')).toBe(need(portable('x86_64')));
    // The build machine's own (glibc 2.36) build is only a fallback, and never for another arch.
    const x86 = collectorCandidates('x86_64');
    expect(x86.indexOf(portable('x86_64'))).toBeLessThan(
      x86.indexOf(join(APP_ROOT, 'remote-collector', 'target', 'release', 'tapdeck-collector')),
    );
    expect(collectorCandidates('aarch64')).not.toContain(
      join(APP_ROOT, 'remote-collector', 'target', 'release', 'tapdeck-collector'),
    );
    expect(findCollector('riscv64')).toBeNull();
  });

  it('a packaged or overridden collector directory comes first, per arch', () => {
    process.env['TAPDECK_COLLECTOR_DIR'] = '/opt/tapdeck/collector';
    expect(collectorCandidates('aarch64')[0]).toBe('/opt/tapdeck/collector/aarch64/tapdeck-collector');
  });
});

describe('portable collector binaries', () => {
  for (const arch of ['x86_64', 'aarch64']) {
    it(`${arch}: right ELF, glibc <= 2.17, libbpf/libelf/zlib static`, () => {
      const r = spawnSync(CHECK, [need(portable(arch)), arch, '2.17'], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain('<= 2.17 (');
      expect(r.stdout).not.toMatch(/libelf|libz|libbpf/);
    });
  }

  it('the check refuses a binary that needs a newer glibc', () => {
    // This very Node binary is built for a recent glibc.
    const r = spawnSync(CHECK, [process.execPath, 'x86_64', '2.17'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/needs GLIBC_2\.\d+.*newer than glibc 2\.17/);
  });

  it('the check refuses a binary for the wrong architecture', () => {
    const r = spawnSync(CHECK, [need(portable('x86_64')), 'aarch64'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('is not a 64-bit ELF for aarch64');
  });

  it('aarch64 runs under qemu-user: --version, and --probe reports instead of crashing', () => {
    const qemu = ['/usr/bin/qemu-aarch64-static', '/usr/bin/qemu-aarch64'].find(existsSync);
    if (!qemu) throw new Error('qemu-user is missing: run scripts/bootstrap (apt-get install qemu-user-static)');
    const sysroot = '/usr/aarch64-linux-gnu';
    if (!existsSync(join(sysroot, 'lib', 'ld-linux-aarch64.so.1')))
      throw new Error('the arm64 glibc is missing: run scripts/bootstrap (apt-get install libc6-arm64-cross)');
    const bin = need(portable('aarch64'));
    const v = spawnSync(qemu, ['-L', sysroot, bin, '--version'], { encoding: 'utf8', timeout: 60_000 });
    expect(v.status, v.stderr).toBe(0);
    expect(v.stdout).toMatch(/^tapdeck-collector \d+\.\d+\.\d+/);

    const p = spawnSync(qemu, ['-L', sysroot, bin, '--probe'], { encoding: 'utf8', timeout: 60_000 });
    // 0: can run; 2: a requirement is missing (BPF under emulation may be). Never a signal.
    expect(p.signal).toBeNull();
    expect([0, 2]).toContain(p.status);
    const report = JSON.parse(p.stdout) as { arch: string; can_run: boolean; missing: string[] };
    expect(report.arch).toBe('aarch64');
    expect(report.can_run).toBe(report.missing.length === 0);
  });
});
