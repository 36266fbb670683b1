// The capture form: where to connect, how to trust the host, what to capture, for how
// long. Start turns into Stop while a capture is in progress.

import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import type { CaptureInfo, CaptureRequest } from '../../../main/api/contract.ts';
import { parseDurationSec, parseList, parseOtlpListen, splitTarget } from '../../../main/api/parse.ts';
import { api } from '../api.ts';
import { capturesQuery, upsertCapture } from '../queries.ts';

interface Fields {
  target: string;
  identity: string;
  knownHosts: string;
  acceptNewHostKey: boolean;
  processes: string;
  duration: string;
  /** The collector's OTLP receiver on the node; empty means its default (127.0.0.1:4318). */
  otlpListen: string;
}

const STORAGE_KEY = 'tapdeck.captureForm';
const EMPTY: Fields = {
  target: '',
  identity: '',
  knownHosts: '',
  acceptNewHostKey: false,
  processes: '',
  duration: '60s',
  otlpListen: '',
};

// File paths and names only (never secrets); the accept-new-host-key choice is not
// remembered: it must be made on purpose each time.
function loadFields(): Fields {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '{}') as Partial<Fields>;
    return { ...EMPTY, ...saved, acceptNewHostKey: false };
  } catch {
    return EMPTY;
  }
}
function saveFields(f: Fields): void {
  try {
    const { acceptNewHostKey: _, ...rest } = f;
    localStorage.setItem(STORAGE_KEY, JSON.stringify(rest));
  } catch {
    /* storage disabled */
  }
}

/** The request for the core, or a sentence saying what to fix. */
function toRequest(f: Fields): CaptureRequest | string {
  const target = f.target.trim();
  if (!target) return 'Enter the node to capture, as [user@]host[:port].';
  if (!splitTarget(target)) return `"${target}" is not a target: write it as [user@]host[:port], e.g. root@gw-1:22.`;
  const durationSec = f.duration.trim() === '' ? undefined : parseDurationSec(f.duration);
  if (durationSec === null) return `"${f.duration}" is not a duration: write it as 30s, 5m or 1h.`;
  const otlpListen = f.otlpListen.trim() === '' ? undefined : parseOtlpListen(f.otlpListen);
  if (otlpListen === null)
    return `"${f.otlpListen}" is not an OTLP receiver address: write IP:PORT (e.g. 0.0.0.0:4318) or off.`;
  const req: CaptureRequest = { target, acceptNewHostKey: f.acceptNewHostKey };
  if (otlpListen !== undefined) req.otlpListen = otlpListen;
  if (f.identity.trim()) req.identity = f.identity.trim();
  if (f.knownHosts.trim()) req.knownHosts = f.knownHosts.trim();
  const processes = parseList(f.processes);
  if (processes.length) req.processes = processes;
  if (durationSec !== undefined) req.durationSec = durationSec;
  return req;
}

type TextKey = { [K in keyof Fields]: Fields[K] extends string ? K : never }[keyof Fields];

interface TextFieldProps {
  label: string;
  name: string;
  /** CSS modifier: field-target, field-path, … */
  kind: string;
  placeholder: string;
  value: string;
  onChange: (value: string) => void;
  disabled: boolean;
  autoComplete?: string;
}

function TextField({ label, name, kind, placeholder, value, onChange, disabled, autoComplete }: TextFieldProps) {
  return (
    <label className={`field field-${kind}`}>
      <span>{label}</span>
      <input
        name={name}
        className="mono"
        placeholder={placeholder}
        value={value}
        onChange={(e) => onChange(e.target.value)}
        disabled={disabled}
        autoComplete={autoComplete}
        spellCheck={false}
      />
    </label>
  );
}

export function CaptureForm({ active, latest }: { active: CaptureInfo | null; latest: CaptureInfo | null }) {
  const qc = useQueryClient();
  const [fields, setFields] = useState<Fields>(loadFields);
  const [formError, setFormError] = useState<string | null>(null);
  const remember = (info: CaptureInfo): void => {
    qc.setQueryData(capturesQuery().queryKey, (old) => upsertCapture(old, info));
  };
  const start = useMutation({ mutationFn: (req: CaptureRequest) => api['capture:start'](req), onSuccess: remember });
  const stop = useMutation({ mutationFn: (id: number) => api['capture:stop']({ id }), onSuccess: remember });

  const set = <K extends keyof Fields>(key: K, value: Fields[K]): void => setFields((f) => ({ ...f, [key]: value }));
  const locked = active !== null || start.isPending;
  const bind = (key: TextKey) => ({
    value: fields[key],
    onChange: (value: string) => set(key, value),
    disabled: locked,
  });

  const onSubmit = (e: FormEvent): void => {
    e.preventDefault();
    if (active) {
      start.reset();
      stop.mutate(active.id);
      return;
    }
    const req = toRequest(fields);
    if (typeof req === 'string') {
      setFormError(req);
      return;
    }
    setFormError(null);
    stop.reset();
    saveFields(fields);
    start.mutate(req);
  };

  const busy = start.isPending || stop.isPending || active?.state === 'stopping';
  const callError = start.error?.message ?? stop.error?.message ?? null;
  // A capture that failed to start is also recorded, and the status line shows its
  // sentence; say it once.
  const shownBelow = latest?.state === 'failed' && latest.message === callError;
  const error = formError ?? (shownBelow ? null : callError);
  const label = start.isPending
    ? 'Starting…'
    : active
      ? active.state === 'stopping' || stop.isPending
        ? 'Stopping…'
        : 'Stop'
      : 'Start';

  return (
    <form className="capture-form" onSubmit={onSubmit} aria-label="Capture">
      <div className="fields">
        <TextField
          label="Target"
          name="target"
          kind="target"
          placeholder="[user@]host[:port]"
          {...bind('target')}
          autoComplete="off"
        />
        <TextField
          label="Identity file"
          name="identity"
          kind="path"
          placeholder="ssh-agent when empty"
          {...bind('identity')}
        />
        <TextField
          label="known_hosts"
          name="knownHosts"
          kind="path"
          placeholder="~/.ssh/known_hosts"
          {...bind('knownHosts')}
        />
        <TextField
          label="Processes"
          name="processes"
          kind="processes"
          placeholder="nginx, openresty, 4211"
          {...bind('processes')}
        />
        <TextField label="Duration" name="duration" kind="duration" placeholder="60s" {...bind('duration')} />
        <TextField
          label="OTLP receiver"
          name="otlpListen"
          kind="otlp"
          placeholder="127.0.0.1:4318"
          {...bind('otlpListen')}
        />
        <label
          className="field-check"
          title="Trust the node's host key on first connection and add it to known_hosts. A changed key is always refused."
        >
          <input
            type="checkbox"
            name="acceptNewHostKey"
            checked={fields.acceptNewHostKey}
            onChange={(e) => set('acceptNewHostKey', e.target.checked)}
            disabled={locked}
          />
          <span>Accept a new host key</span>
        </label>
        <button type="submit" className={active ? 'btn btn-stop' : 'btn btn-start'} disabled={busy}>
          {label}
        </button>
      </div>
      {error && (
        <p className="form-error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
