// Runs the release collector directly (as root, no SSH) and decodes its frames, for
// root tests that check what it captures in the lab.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { FrameDecoder, type Frame } from '../../main/ingest/frames.ts';
import { COLLECTOR_BIN } from './lab.ts';

export interface CollectorRun {
  child: ChildProcessWithoutNullStreams;
  frames: Frame[];
  /** Every stdout byte, to search frames for what must never be in them. */
  raw: Buffer[];
  stderr: string;
  exited: Promise<number | null>;
}

export function startCollector(args: string[]): CollectorRun {
  const child = spawn(COLLECTOR_BIN, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const decoder = new FrameDecoder();
  const run: CollectorRun = {
    child,
    frames: [],
    raw: [],
    stderr: '',
    exited: new Promise((r) => child.on('close', (code) => r(code))),
  };
  child.stdout.on('data', (d: Buffer) => {
    run.raw.push(d);
    run.frames.push(...decoder.push(d));
  });
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

export const spansOf = (r: CollectorRun): Record<string, unknown>[] =>
  r.frames.filter((f) => f.type === 'span').map((f) => f.body);

/** Starts the collector on `args` and waits for its hello (and for the probes to attach). */
export async function startAndWait(args: string[]): Promise<CollectorRun> {
  const run = startCollector(args);
  await until('hello', () => run.frames.some((f) => f.type === 'hello' || f.type === 'error'));
  const err = run.frames.find((f) => f.type === 'error');
  if (err) throw new Error(`the collector failed to start: ${JSON.stringify(err.body)}\n${run.stderr}`);
  await new Promise((r) => setTimeout(r, 300));
  return run;
}

/** Closes stdin (as the SSH channel closing does), waits for exit, returns the final stats body. */
export async function stopCollector(run: CollectorRun): Promise<Record<string, unknown>> {
  run.child.stdin.end();
  const code = await run.exited;
  if (code !== 0) throw new Error(`the collector exited ${code}: ${run.stderr}`);
  const stats = run.frames.filter((f) => f.type === 'stats' && f.body['final'] === true).at(-1);
  if (!stats) throw new Error('no final stats frame');
  return stats.body;
}
