// One line on the capture in progress (or the last one): state, node, counters and
// the collector's own cost, then the core's sentence when there is one.

import { useEffect, useState } from 'react';
import type { CaptureInfo } from '../../../main/api/contract.ts';
import { formatBytes, formatCount, formatElapsed, formatTime } from '../format.ts';

/** The current time in µs, ticking every second while `ticking`. */
function useNowUs(ticking: boolean): number {
  const [now, setNow] = useState(() => Date.now() * 1000);
  useEffect(() => {
    if (!ticking) return;
    const t = setInterval(() => setNow(Date.now() * 1000), 1000);
    return () => clearInterval(t);
  }, [ticking]);
  return now;
}

export function StatusLine({ capture, loadError }: { capture: CaptureInfo | null; loadError: string | null }) {
  const nowUs = useNowUs(capture !== null && capture.endedAtUs === null);
  if (loadError) {
    return (
      <section className="status-line" aria-label="Capture status">
        <p className="status-message status-failed" role="alert">
          {loadError}
        </p>
      </section>
    );
  }
  if (!capture) {
    return (
      <section className="status-line" aria-label="Capture status">
        <span className="status-idle">No capture in this file yet: enter a target and press Start.</span>
      </section>
    );
  }
  const s = capture.stats;
  const endUs = capture.endedAtUs ?? nowUs;
  const reasons = Object.entries(s.dropReasons)
    .filter(([, n]) => n > 0)
    .map(([why, n]) => `${why} ${formatCount(n)}`)
    .join(', ');
  return (
    <section className="status-line" aria-label="Capture status">
      <div className="status-items">
        <span className={`state state-${capture.state}`} data-testid="capture-state">
          {capture.state}
        </span>
        <span className="mono">
          #{capture.id} {capture.target}
        </span>
        {capture.node && (
          <span>
            node <b className="mono">{capture.node}</b>
          </span>
        )}
        <span title={formatTime(capture.startedAtUs)}>
          started {formatTime(capture.startedAtUs).slice(0, 8)} · {formatElapsed(endUs - capture.startedAtUs)}
        </span>
        <span>
          events <b>{formatCount(s.events)}</b>
        </span>
        <span>
          spans <b>{formatCount(s.spans)}</b>
        </span>
        <span className={s.drops > 0 ? 'drops-nonzero' : undefined} title={reasons || undefined}>
          drops <b>{formatCount(s.drops)}</b>
          {reasons && <span className="muted"> ({reasons})</span>}
        </span>
        {s.collectorCpuPct !== null && (
          <span>
            collector CPU <b>{s.collectorCpuPct.toFixed(1)}%</b>
          </span>
        )}
        {s.collectorRssBytes !== null && (
          <span>
            RSS <b>{formatBytes(s.collectorRssBytes)}</b>
          </span>
        )}
      </div>
      {capture.message && (
        <p
          className={`status-message ${capture.state === 'failed' ? 'status-failed' : ''}`}
          role={capture.state === 'failed' ? 'alert' : undefined}
        >
          {capture.message}
        </p>
      )}
    </section>
  );
}
