// The collector binary run directly (as root) with its frames decoded as they come.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { FrameDecoder, type Frame } from '../../main/ingest/frames.ts';
import { COLLECTOR_BIN } from './lab.ts';

export interface CollectorRun {
  child: ChildProcessWithoutNullStreams;
  frames: Frame[];
  stderr: string;
  exited: Promise<number | null>;
}

export function startCollector(args: string[]): CollectorRun {
  const child = spawn(COLLECTOR_BIN, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const decoder = new FrameDecoder();
  const run: CollectorRun = {
    child,
    frames: [],
    stderr: '',
    exited: new Promise((r) => child.on('close', (code) => r(code))),
  };
  child.stdout.on('data', (d: Buffer) => run.frames.push(...decoder.push(d)));
  child.stderr.on('data', (d: Buffer) => (run.stderr += d.toString()));
  return run;
}

export async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const spanBodies = (r: CollectorRun): Record<string, unknown>[] =>
  r.frames.filter((f) => f.type === 'span').map((f) => f.body);
