// What a running collector holds in the kernel and on disk, and what of it is left
// after it ends. Objects are identified by the ids the collector held at the start
// (BPF program and link ids are never reused soon: the kernel allocates them
// cyclically), never by counting everything on the machine, so other BPF users
// running at the same time cannot make these checks pass or fail.

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { dirname } from 'node:path';

export interface BpfObject {
  id: number;
  /** Program name, or link type. */
  name: string;
}

export interface Held {
  pid: number;
  progs: BpfObject[];
  links: BpfObject[];
  /** Inodes of the AF_PACKET sockets the process has open. */
  packetSockets: string[];
  /** The directory of the running binary (e.g. /tmp/tapdeck.AbC12345 when deployed over SSH). */
  exeDir: string | null;
}

interface BpftoolEntry {
  id: number;
  name?: string;
  type?: string;
}

function bpftool(what: 'prog' | 'link'): BpftoolEntry[] {
  const r = spawnSync('bpftool', [what, 'show', '--json'], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`bpftool ${what} show failed: ${r.stderr}`);
  return JSON.parse(r.stdout || '[]') as BpftoolEntry[];
}

/**
 * The BPF program and link ids behind `pid`'s file descriptors, from
 * /proc/PID/fdinfo (`prog_id:` / `link_id:`). Debian 12's bpftool does not list
 * the pids holding an object, so the kernel's own fd records are the reference.
 */
export function bpfIdsHeldBy(pid: number): { progIds: Set<number>; linkIds: Set<number> } {
  const progIds = new Set<number>();
  const linkIds = new Set<number>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return { progIds, linkIds };
  }
  for (const fd of fds) {
    let info: string;
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    const link = /^link_id:\s*(\d+)/m.exec(info);
    if (link) {
      linkIds.add(Number(link[1]));
      continue;
    }
    const prog = /^prog_id:\s*(\d+)/m.exec(info);
    if (prog) progIds.add(Number(prog[1]));
  }
  return { progIds, linkIds };
}

function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.add(m[1]!);
    } catch {
      // the fd closed while we looked
    }
  }
  return out;
}

/** Inodes of every AF_PACKET socket in the root network namespace. */
export function packetSocketInodes(): Set<string> {
  const lines = readFileSync('/proc/net/packet', 'utf8').trim().split('\n');
  const header = lines.shift()?.trim().split(/\s+/) ?? [];
  const col = header.indexOf('Inode');
  return new Set(lines.map((l) => l.trim().split(/\s+/)[col]!).filter(Boolean));
}

export function heldBy(pid: number): Held {
  const { progIds, linkIds } = bpfIdsHeldBy(pid);
  const progs = bpftool('prog')
    .filter((e) => progIds.has(e.id))
    .map((e) => ({ id: e.id, name: e.name ?? '?' }));
  const links = bpftool('link')
    .filter((e) => linkIds.has(e.id))
    .map((e) => ({ id: e.id, name: e.type ?? '?' }));
  if (progs.length !== progIds.size || links.length !== linkIds.size)
    throw new Error(`bpftool does not list every BPF object pid ${pid} holds`);
  const packets = packetSocketInodes();
  const packetSockets = [...socketInodes(pid)].filter((i) => packets.has(i));
  let exeDir: string | null;
  try {
    exeDir = dirname(readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, ''));
  } catch {
    exeDir = null;
  }
  return { pid, progs, links, packetSockets, exeDir };
}

export function alive(pid: number): boolean {
  try {
    // A zombie has exited: its BPF objects are released; only the parent has not reaped it.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** Lines of the kernel's tracefs uprobe list that libbpf's legacy (tracefs) attach would have added for `pid`. */
export function uprobeEvents(pid: number): string[] {
  const lines: string[] = [];
  for (const f of ['/sys/kernel/tracing/uprobe_events', '/sys/kernel/debug/tracing/uprobe_events']) {
    try {
      lines.push(
        ...readFileSync(f, 'utf8')
          .split('\n')
          .filter((l) => l.includes(`libbpf_${pid}_`)),
      );
    } catch {
      // not mounted here
    }
  }
  return lines;
}

/** What is still there of `held`: an empty list means everything was released. */
export function leftovers(held: Held, opts: { dirMustGo: boolean }): string[] {
  const out: string[] = [];
  if (alive(held.pid)) out.push(`collector pid ${held.pid} still running`);
  const progIds = new Set(bpftool('prog').map((e) => e.id));
  for (const p of held.progs) if (progIds.has(p.id)) out.push(`BPF program ${p.id} (${p.name})`);
  const linkIds = new Set(bpftool('link').map((e) => e.id));
  for (const l of held.links) if (linkIds.has(l.id)) out.push(`BPF link ${l.id} (${l.name})`);
  const packets = packetSocketInodes();
  for (const i of held.packetSockets) if (packets.has(i)) out.push(`packet socket inode ${i}`);
  for (const u of uprobeEvents(held.pid)) out.push(`uprobe event ${u}`);
  if (opts.dirMustGo && held.exeDir && existsSync(held.exeDir)) out.push(`directory ${held.exeDir}`);
  return out;
}

/** Polls until nothing of `held` is left; returns the milliseconds it took, or throws with what is left. */
export async function untilReleased(
  held: Held,
  opts: { dirMustGo: boolean; timeoutMs: number; since?: number },
): Promise<number> {
  const start = performance.now();
  const t0 = opts.since ?? start;
  for (;;) {
    const left = leftovers(held, opts);
    if (left.length === 0) return performance.now() - t0;
    if (performance.now() - start > opts.timeoutMs)
      throw new Error(`after ${opts.timeoutMs} ms, still there: ${left.join('; ')}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Parent pid of `pid`, or null. */
export function ppid(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

export function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** `pid` and its ancestors, nearest first. */
export function ancestry(pid: number): number[] {
  const out: number[] = [];
  for (let p: number | null = pid; p && p > 1 && out.length < 64; p = ppid(p)) out.push(p);
  return out;
}

/** Every process below `root` (any depth). */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pp = ppid(Number(d));
    if (pp === null) continue;
    children.set(pp, [...(children.get(pp) ?? []), Number(d)]);
  }
  const out: number[] = [];
  const stack = [...(children.get(root) ?? [])];
  while (stack.length) {
    const p = stack.pop()!;
    out.push(p);
    stack.push(...(children.get(p) ?? []));
  }
  return out;
}
