import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { CaptureForm } from './components/capture-form.tsx';
import { RequestLog } from './components/request-log.tsx';
import { StatusLine } from './components/status-line.tsx';
import { TraceView } from './components/trace-view.tsx';
import { ACTIVE_STATES, appInfoQuery, capturesQuery } from './queries.ts';
import { useLiveEvents } from './use-live-events.ts';

export function App() {
  const [live, setLive] = useState(true);
  /** The span whose trace is open, or null for the request log. */
  const [traceOf, setTraceOf] = useState<number | null>(null);
  useLiveEvents({ live });
  const info = useQuery(appInfoQuery());
  const captures = useQuery(capturesQuery());
  const list = captures.data ?? [];
  const active = list.find((c) => ACTIVE_STATES.has(c.state)) ?? null;
  const current = active ?? list[0] ?? null;

  return (
    <div className="app">
      <header className="topbar">
        <h1>Tapdeck</h1>
        {info.data && (
          <>
            <span className="topbar-file mono" title="Capture file">
              {info.data.dbPath}
            </span>
            <span className="topbar-meta">
              {info.data.mode === 'web' ? 'web mode' : 'desktop'} · v{info.data.version}
            </span>
          </>
        )}
        {info.error && (
          <span className="topbar-error" role="alert">
            {info.error.message}
          </span>
        )}
      </header>
      <CaptureForm active={active} latest={list[0] ?? null} />
      <StatusLine capture={current} loadError={captures.error?.message ?? null} />
      {/* The log stays mounted (hidden) under an open trace: filters and scroll survive "back". */}
      <RequestLog
        captures={list}
        live={live}
        onLiveChange={setLive}
        onOpenTrace={setTraceOf}
        hidden={traceOf !== null}
      />
      {traceOf !== null && <TraceView key={traceOf} spanId={traceOf} onBack={() => setTraceOf(null)} />}
    </div>
  );
}
