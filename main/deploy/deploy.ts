// Upload the collector into a private directory on the node, check its hash there,
// run it as root without a pty, and remove everything at the end.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client, ClientChannel } from 'ssh2';
import { APP_ROOT } from '../paths.ts';
import { exec, shq, SshError } from '../ssh/connect.ts';
import type { NodeProbe } from './probe.ts';

const RUST_TRIPLES: Record<string, string> = {
  x86_64: 'x86_64-unknown-linux-gnu',
  aarch64: 'aarch64-unknown-linux-gnu',
};

/** Where the collector binary for `arch` is: packaged resources, an override, or the cargo build. */
export function collectorCandidates(arch: string): string[] {
  const out: string[] = [];
  const override = process.env['TAPDECK_COLLECTOR_DIR'];
  if (override) out.push(join(override, arch, 'tapdeck-collector'), join(override, 'tapdeck-collector'));
  const resources = (process as NodeJS.Process & { resourcesPath?: string }).resourcesPath;
  if (resources) out.push(join(resources, 'collector', arch, 'tapdeck-collector'));
  const triple = RUST_TRIPLES[arch];
  if (triple) out.push(join(APP_ROOT, 'remote-collector', 'target', triple, 'release', 'tapdeck-collector'));
  if (arch === process.arch.replace('x64', 'x86_64').replace('arm64', 'aarch64')) {
    out.push(join(APP_ROOT, 'remote-collector', 'target', 'release', 'tapdeck-collector'));
  }
  return out;
}

export function findCollector(arch: string): string | null {
  return collectorCandidates(arch).find((p) => existsSync(p)) ?? null;
}

export function availableArches(): string[] {
  return Object.keys(RUST_TRIPLES).filter((a) => findCollector(a) !== null);
}

export class DeployError extends Error {
  override name = 'DeployError';
}

export interface Deployment {
  dir: string;
  binary: string;
  sha256: string;
  bytes: number;
}

/** Creates a private directory, uploads the binary by SFTP and checks its sha256 on the node. */
export async function uploadCollector(client: Client, probe: NodeProbe): Promise<Deployment> {
  const local = findCollector(probe.arch);
  if (!local)
    throw new DeployError(
      `No collector binary for ${probe.arch}: run "npm run build:collector" (looked in ${collectorCandidates(probe.arch).join(', ')}).`,
    );
  const data = readFileSync(local);
  const sha256 = createHash('sha256').update(data).digest('hex');

  const mk = await exec(client, `umask 077 && mktemp -d "\${TMPDIR:-/tmp}/tapdeck.XXXXXXXX"`);
  const dir = mk.stdout.trim();
  if (mk.code !== 0 || !dir.startsWith('/')) {
    throw new DeployError(
      `Cannot create a private temporary directory on ${probe.hostname}: ${mk.stderr.trim() || `exit ${mk.code}`}. Is /tmp writable?`,
    );
  }
  const binary = `${dir}/tapdeck-collector`;
  try {
    await new Promise<void>((resolve, reject) => {
      client.sftp((err, sftp) => {
        if (err)
          return reject(
            new DeployError(
              `The node's sshd offers no SFTP subsystem (${err.message}): enable "Subsystem sftp" in sshd_config.`,
            ),
          );
        const ws = sftp.createWriteStream(binary, { mode: 0o700 });
        ws.on('error', (e: Error) => {
          sftp.end();
          reject(new DeployError(`Uploading the collector to ${probe.hostname}:${binary} failed: ${e.message}.`));
        });
        ws.on('close', () => {
          sftp.end();
          resolve();
        });
        ws.end(data);
      });
    });
    const check = await exec(client, `chmod 700 ${shq(binary)} && sha256sum ${shq(binary)}`);
    const remoteHash = check.stdout.trim().split(/\s+/)[0];
    if (check.code !== 0 || remoteHash !== sha256) {
      throw new DeployError(
        `The collector uploaded to ${probe.hostname} does not match (sha256 ${remoteHash ?? '?'} there, ${sha256} here): the transfer was corrupted or altered. Nothing was run; try again.`,
      );
    }
  } catch (err) {
    await removeDeployment(client, dir).catch(() => undefined);
    throw err;
  }
  return { dir, binary, sha256, bytes: data.length };
}

export interface CollectorArgs {
  processes: string[];
  durationSec: number;
  /** `--otlp-listen`: the OTLP receiver's address on the node, or `off`. */
  otlpListen?: string;
  /** The collector's `--signals` list (s, n, a); absent: the collector's default. */
  signals?: string[];
}

/**
 * The remote shell script: it runs the collector as root and removes the private
 * directory when the collector exits, whichever way (the SSH channel closing gives
 * the collector EOF on stdin, so cleanup happens even if Tapdeck dies).
 */
export function collectorScript(d: Deployment, probe: NodeProbe, args: CollectorArgs): string {
  const parts = [shq(d.binary), '--duration', `${Math.max(1, Math.round(args.durationSec))}s`];
  for (const p of args.processes) parts.push('--process', shq(p));
  if (args.otlpListen) parts.push('--otlp-listen', shq(args.otlpListen));
  if (args.signals?.length) parts.push('--signals', shq(args.signals.join(',')));
  const run = (probe.privilege === 'root' ? '' : 'sudo -n ') + parts.join(' ');
  // SIGPIPE is ignored so that the shell, writing to a dropped channel (e.g. dash's
  // report that sudo died of SIGHUP), cannot be killed before its EXIT trap runs.
  // The collector is unaffected: Rust programs ignore SIGPIPE and handle EPIPE.
  return `trap '' PIPE; trap 'rm -rf ${shq(d.dir)}' EXIT HUP TERM INT; ${run}`;
}

/** The command for `exec` (no pty): the script under `sh -c`. */
export function collectorCommand(d: Deployment, probe: NodeProbe, args: CollectorArgs): string {
  return `sh -c ${shq(collectorScript(d, probe, args))}`;
}

export function startCollector(client: Client, command: string): Promise<ClientChannel> {
  return new Promise<ClientChannel>((resolve, reject) => {
    client.exec(command, { pty: false }, (err, stream) => {
      if (err) reject(new SshError('command', `Cannot start the collector: ${err.message}.`));
      else resolve(stream);
    });
  });
}

export async function removeDeployment(client: Client, dir: string): Promise<boolean> {
  if (!/^\/[\w./-]*tapdeck\.[A-Za-z0-9]+$/.test(dir))
    throw new DeployError(`Refusing to remove unexpected path ${dir}.`);
  const r = await exec(client, `rm -rf ${shq(dir)}; test ! -e ${shq(dir)}`);
  return r.code === 0;
}
