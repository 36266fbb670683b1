// The one hook that turns pushed events into cache updates: a capture's new state goes
// straight into the capture list (setQueryData); new spans invalidate the request log
// and the capture list (for span counts), at most a few times a second however fast
// spans arrive.

import { useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef } from 'react';
import { api, onReconnect } from './api.ts';
import { capturesQuery, requestsQueryRoot, upsertCapture } from './queries.ts';

const REFRESH_EVERY_MS = 300;

export function useLiveEvents({ live }: { live: boolean }): void {
  const qc = useQueryClient();
  const liveRef = useRef(live);
  useEffect(() => {
    liveRef.current = live;
    if (live) void qc.invalidateQueries({ queryKey: requestsQueryRoot });
  }, [live, qc]);

  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | null = null;
    let pending = false;
    const refresh = (): void => {
      void qc.invalidateQueries({ queryKey: capturesQuery().queryKey });
      if (liveRef.current) void qc.invalidateQueries({ queryKey: requestsQueryRoot });
    };
    // Leading edge now, then at most one trailing refresh per period.
    const throttled = (): void => {
      if (timer) {
        pending = true;
        return;
      }
      refresh();
      const tick = (): void => {
        if (pending) {
          pending = false;
          refresh();
          timer = setTimeout(tick, REFRESH_EVERY_MS);
        } else timer = null;
      };
      timer = setTimeout(tick, REFRESH_EVERY_MS);
    };

    const offs = [
      api.on('capture:updated', (info) => {
        qc.setQueryData(capturesQuery().queryKey, (old) => upsertCapture(old, info));
      }),
      api.on('spans:added', throttled),
      onReconnect(() => void qc.invalidateQueries()),
    ];
    return () => {
      offs.forEach((off) => off());
      if (timer) clearTimeout(timer);
    };
  }, [qc]);
}
