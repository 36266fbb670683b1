// SSH connections with host-key verification, key-file or agent auth, an optional
// jump host, and remote commands that fail with typed errors.

import { readFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { Client, type ClientChannel, type ConnectConfig } from 'ssh2';
import { addHostKey, checkHostKey, hostId, keyTypeOf, readKnownHosts } from './known-hosts.ts';
import { splitTarget } from '../api/parse.ts';
import { CodedError } from '../errors.ts';

export interface SshTarget {
  user: string;
  host: string;
  port: number;
}

export type SshErrorCode =
  | 'bad_target'
  | 'unreachable'
  | 'timeout'
  | 'host_key_unknown'
  | 'host_key_changed'
  | 'host_key_revoked'
  | 'auth'
  | 'identity'
  | 'command'
  | 'closed';

export class SshError extends CodedError<SshErrorCode> {
  override name = 'SshError';
}

export function parseTarget(spec: string): SshTarget {
  const parts = splitTarget(spec);
  if (!parts) {
    throw new SshError('bad_target', `"${spec}" is not a target: write [user@]host[:port], e.g. admin@10.0.0.5:22.`);
  }
  const port = parts.port ?? 22;
  if (!(port > 0 && port < 65536))
    throw new SshError('bad_target', `Port ${port} in "${spec}" is out of range (1-65535).`);
  return { user: parts.user ?? userInfo().username, host: parts.host, port };
}

export function formatTarget(t: SshTarget): string {
  return `${t.user}@${t.host}${t.port === 22 ? '' : `:${t.port}`}`;
}

export const DEFAULT_KNOWN_HOSTS = join(homedir(), '.ssh', 'known_hosts');

export interface ConnectOptions {
  target: SshTarget;
  identity?: string;
  jump?: SshTarget;
  knownHostsFile?: string;
  acceptNewHostKey?: boolean;
  timeoutMs?: number;
  /** Told when a new host key was recorded. */
  onHostKeyAdded?: (host: string, type: string) => void;
}

function authConfig(identity: string | undefined): Pick<ConnectConfig, 'privateKey' | 'agent'> {
  if (identity) {
    try {
      return { privateKey: readFileSync(identity) };
    } catch (err) {
      throw new SshError(
        'identity',
        `Cannot read the identity file ${identity}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}. Check the path, or leave it out to use ssh-agent.`,
      );
    }
  }
  if (process.env['SSH_AUTH_SOCK']) return { agent: process.env['SSH_AUTH_SOCK'] };
  throw new SshError(
    'identity',
    'No identity file given and no ssh-agent running (SSH_AUTH_SOCK is unset): pass --identity FILE or start ssh-agent and add your key.',
  );
}

function connectOne(t: SshTarget, opts: ConnectOptions, sock?: ClientChannel): Promise<Client> {
  const knownHostsFile = opts.knownHostsFile ?? DEFAULT_KNOWN_HOSTS;
  const auth = authConfig(opts.identity);
  return new Promise<Client>((resolve, reject) => {
    const client = new Client();
    let hostKeyFailure: SshError | null = null;
    let settled = false;
    const fail = (err: SshError): void => {
      if (settled) return;
      settled = true;
      client.end();
      reject(err);
    };
    client.on('ready', () => {
      settled = true;
      resolve(client);
    });
    client.on('error', (err: Error & { level?: string; code?: string }) => {
      if (hostKeyFailure) return fail(hostKeyFailure);
      const where = `${t.host}:${t.port}`;
      if (err.level === 'client-authentication') {
        return fail(
          new SshError(
            'auth',
            `${where} refused the key for user ${t.user}: add your public key to ~${t.user}/.ssh/authorized_keys on the node, or pass the right --identity.`,
          ),
        );
      }
      if (err.level === 'client-timeout' || err.code === 'ETIMEDOUT') {
        return fail(
          new SshError(
            'timeout',
            `${where} did not answer in time: check the address, the port and any firewall between you and the node.`,
          ),
        );
      }
      if (err.code === 'ECONNREFUSED') {
        return fail(
          new SshError(
            'unreachable',
            `${where} refused the connection: is sshd running there and listening on port ${t.port}?`,
          ),
        );
      }
      if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') {
        return fail(
          new SshError('unreachable', `Cannot resolve ${t.host}: check the host name or use its IP address.`),
        );
      }
      if (err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') {
        return fail(
          new SshError(
            'unreachable',
            `${where} is unreachable from here (${err.code}): check your VPN or route to the node.`,
          ),
        );
      }
      fail(new SshError('unreachable', `Cannot connect to ${where}: ${err.message}.`));
    });
    client.on('close', () =>
      fail(new SshError('closed', `The SSH connection to ${t.host}:${t.port} closed during set-up.`)),
    );

    const config: ConnectConfig = {
      host: t.host,
      port: t.port,
      username: t.user,
      ...auth,
      readyTimeout: opts.timeoutMs ?? 10_000,
      keepaliveInterval: 5_000,
      keepaliveCountMax: 3,
      hostVerifier: (key: Buffer): boolean => {
        const id = hostId(t.host, t.port);
        let type: string;
        try {
          type = keyTypeOf(key);
        } catch {
          hostKeyFailure = new SshError('host_key_changed', `${id} sent a malformed host key; refusing to connect.`);
          return false;
        }
        const verdict = checkHostKey(readKnownHosts(knownHostsFile), t.host, t.port, key);
        switch (verdict.status) {
          case 'known':
            return true;
          case 'revoked':
            hostKeyFailure = new SshError(
              'host_key_revoked',
              `The host key of ${id} is marked @revoked in ${knownHostsFile} (line ${verdict.line}); refusing to connect.`,
            );
            return false;
          case 'changed':
            hostKeyFailure = new SshError(
              'host_key_changed',
              `The host key of ${id} has CHANGED (${knownHostsFile} line ${verdict.line} holds a different ${verdict.knownType} key). This could be an attack; if the node was rebuilt, confirm its new key out of band, remove that line, and connect again.`,
            );
            return false;
          case 'unknown':
            if (!opts.acceptNewHostKey) {
              hostKeyFailure = new SshError(
                'host_key_unknown',
                `${id} is not in ${knownHostsFile}. Check its ${type} key fingerprint out of band, then connect again with --accept-new-host-key to record it.`,
              );
              return false;
            }
            addHostKey(knownHostsFile, t.host, t.port, key);
            opts.onHostKeyAdded?.(id, type);
            return true;
        }
      },
    };
    if (sock) config.sock = sock;
    try {
      client.connect(config);
    } catch (err) {
      fail(
        new SshError(
          'identity',
          `Cannot use the identity: ${(err as Error).message}. Is it a private key without a passphrase (or loaded in ssh-agent)?`,
        ),
      );
    }
  });
}

/** Connects to the target, through the jump host when one is given. */
export async function connect(opts: ConnectOptions): Promise<Client> {
  if (!opts.jump) return connectOne(opts.target, opts);
  const jump = await connectOne(opts.jump, opts);
  const sock = await new Promise<ClientChannel>((resolve, reject) => {
    jump.forwardOut('127.0.0.1', 0, opts.target.host, opts.target.port, (err, ch) => {
      if (err) {
        reject(
          new SshError(
            'unreachable',
            `The jump host ${opts.jump!.host} cannot reach ${opts.target.host}:${opts.target.port}: ${err.message}.`,
          ),
        );
      } else resolve(ch);
    });
  }).catch((err: unknown) => {
    jump.end();
    throw err;
  });
  const client = await connectOne(opts.target, opts, sock).catch((err: unknown) => {
    jump.end();
    throw err;
  });
  client.on('close', () => jump.end());
  return client;
}

export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs a command (no pty) and collects its output. */
export function exec(client: Client, command: string, stdin?: string): Promise<ExecResult> {
  return new Promise<ExecResult>((resolve, reject) => {
    client.exec(command, { pty: false }, (err, stream) => {
      if (err) return reject(new SshError('command', `Cannot run a command on the node: ${err.message}.`));
      const out: Buffer[] = [];
      const errOut: Buffer[] = [];
      stream.on('data', (d: Buffer) => out.push(d));
      stream.stderr.on('data', (d: Buffer) => errOut.push(d));
      stream.on('close', (code: number | null, signal: string | null) => {
        resolve({
          code: code ?? null,
          signal: signal ?? null,
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(errOut).toString('utf8'),
        });
      });
      if (stdin !== undefined) stream.end(stdin);
      else stream.end();
    });
  });
}

/** Single-quotes a word for a POSIX shell. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
