// What Tapdeck needs to know about a node before it uploads anything, read with one
// POSIX shell command, and the sentence to show when the node cannot run a capture.

import type { Client } from 'ssh2';
import { exec } from '../ssh/connect.ts';
import { CodedError } from '../errors.ts';

export type Privilege = 'root' | 'sudo' | 'none';

export interface NodeProbe {
  hostname: string;
  arch: string;
  kernel: string;
  btf: boolean;
  privilege: Privilege;
  user: string;
  hasSha256sum: boolean;
}

export type ProbeErrorCode =
  'no_sudo' | 'no_btf' | 'old_kernel' | 'arch' | 'probe_failed' | 'no_sha256sum' | 'not_linux';

export class ProbeError extends CodedError<ProbeErrorCode> {
  override name = 'ProbeError';
}

export const PROBE_SCRIPT = [
  'echo "os=$(uname -s)"',
  'echo "arch=$(uname -m)"',
  'echo "kernel=$(uname -r)"',
  'echo "hostname=$(hostname 2>/dev/null || uname -n)"',
  'echo "user=$(id -un)"',
  'if [ -r /sys/kernel/btf/vmlinux ]; then echo btf=yes; else echo btf=no; fi',
  'if [ "$(id -u)" = 0 ]; then echo priv=root; elif sudo -n true >/dev/null 2>&1; then echo priv=sudo; else echo priv=none; fi',
  'if command -v sha256sum >/dev/null 2>&1; then echo sha256sum=yes; else echo sha256sum=no; fi',
].join('; ');

export const MIN_KERNEL: readonly [number, number] = [5, 8];

export function parseProbe(out: string): NodeProbe {
  const kv = new Map<string, string>();
  for (const line of out.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  const need = (k: string): string => {
    const v = kv.get(k);
    if (v === undefined)
      throw new ProbeError(
        'probe_failed',
        `The node's answer to the probe lacks "${k}": is its login shell a POSIX shell?`,
      );
    return v;
  };
  if (need('os') !== 'Linux') {
    throw new ProbeError(
      'not_linux',
      `The node runs ${need('os')}, not Linux: Tapdeck's collector needs a Linux kernel with eBPF.`,
    );
  }
  return {
    hostname: need('hostname'),
    arch: need('arch'),
    kernel: need('kernel'),
    btf: need('btf') === 'yes',
    privilege: need('priv') as Privilege,
    user: need('user'),
    hasSha256sum: need('sha256sum') === 'yes',
  };
}

export function kernelVersion(release: string): [number, number] | null {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : null;
}

/** Throws the ProbeError that tells the user what to fix, or returns when the node can run a capture. */
export function checkProbe(p: NodeProbe, supportedArches: readonly string[]): void {
  const kv = kernelVersion(p.kernel);
  if (kv && (kv[0] < MIN_KERNEL[0] || (kv[0] === MIN_KERNEL[0] && kv[1] < MIN_KERNEL[1]))) {
    throw new ProbeError(
      'old_kernel',
      `${p.hostname} runs kernel ${p.kernel}, older than ${MIN_KERNEL.join('.')}: the collector needs BPF ring buffers and BTF (5.8 or newer). Capture on a node with a newer kernel.`,
    );
  }
  if (!p.btf) {
    throw new ProbeError(
      'no_btf',
      `${p.hostname} (kernel ${p.kernel}) has no /sys/kernel/btf/vmlinux: the collector needs a kernel built with CONFIG_DEBUG_INFO_BTF=y. Most distribution kernels since 2021 have it; upgrade the kernel package.`,
    );
  }
  if (p.privilege === 'none') {
    throw new ProbeError(
      'no_sudo',
      `User ${p.user} on ${p.hostname} is not root and cannot run sudo without a password (sudo -n failed). Grant it passwordless sudo (e.g. "${p.user} ALL=(root) NOPASSWD: ALL" in /etc/sudoers.d/), or connect as root.`,
    );
  }
  if (!supportedArches.includes(p.arch)) {
    throw new ProbeError(
      'arch',
      `${p.hostname} is ${p.arch}, and this Tapdeck has a collector only for ${supportedArches.join(', ') || 'no architecture'}: build remote-collector for ${p.arch} (see README) or capture on a ${supportedArches.join('/')} node.`,
    );
  }
  if (!p.hasSha256sum) {
    throw new ProbeError(
      'no_sha256sum',
      `${p.hostname} has no sha256sum, so Tapdeck cannot check the uploaded collector before running it as root. Install coreutils on the node.`,
    );
  }
}

export async function probeNode(client: Client): Promise<NodeProbe> {
  const r = await exec(client, `sh -c '${PROBE_SCRIPT.replace(/'/g, `'\\''`)}'`);
  if (r.code !== 0) {
    throw new ProbeError(
      'probe_failed',
      `Probing the node failed (exit ${r.code}): ${r.stderr.trim() || 'no message'}.`,
    );
  }
  return parseProbe(r.stdout);
}
