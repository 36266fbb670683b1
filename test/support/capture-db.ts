// Polls a capture file that `tapdeck capture` is still writing (WAL: readers see each
// committed batch), for tests that must wait for spans that arrive on their own time.

import Database from 'better-sqlite3';

/**
 * Waits until the capture file holds at least `count` spans matching `where` (an SQL
 * condition on the spans table), or throws after `ms`. Returns the count seen.
 *
 * svca's OpenTelemetry SDK exports in batches and retries a failed export with
 * backoff before it sends the next batch; a batch that failed while nothing listened
 * (the lab's own start-up checks) can hold later spans back for several seconds.
 */
export async function waitForSpans(db: string, where: string, count: number, ms = 30_000): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    let seen = 0;
    try {
      const conn = new Database(db, { readonly: true, fileMustExist: true });
      try {
        seen = (conn.prepare(`SELECT COUNT(*) AS n FROM spans WHERE ${where}`).get() as { n: number }).n;
      } finally {
        conn.close();
      }
    } catch {
      // not created or not migrated yet: try again
    }
    if (seen >= count) return seen;
    if (Date.now() - t0 > ms)
      throw new Error(`timed out after ${ms} ms waiting for ${count} spans where ${where} (saw ${seen})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
