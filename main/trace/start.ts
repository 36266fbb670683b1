// A trace request as it arrives over the bridge or from the CLI: exactly one of
// `requestId`, `traceId` (non-empty strings) or `spanId` (a row id).

import type { TraceStart } from '../api/trace.ts';
import { CodedError } from '../errors.ts';

export class BadTraceStartError extends CodedError<'bad_request'> {
  override name = 'BadTraceStartError';
  readonly status = 400;
}

export function parseTraceStart(q: unknown): TraceStart {
  const o = (typeof q === 'object' && q !== null ? q : {}) as Record<string, unknown>;
  const keys = ['requestId', 'traceId', 'spanId'].filter((k) => o[k] !== undefined);
  if (keys.length !== 1)
    throw new BadTraceStartError(
      'bad_request',
      'Say where the trace starts with exactly one of: an X-Request-ID, a trace id or a span id.',
    );
  const v = o[keys[0]!];
  if (keys[0] === 'spanId') {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0)
      throw new BadTraceStartError(
        'bad_request',
        `The span id must be a positive whole number (a row "id"), not ${JSON.stringify(v)}.`,
      );
    return { spanId: v };
  }
  if (typeof v !== 'string' || v.trim() === '' || v.length > 1024)
    throw new BadTraceStartError(
      'bad_request',
      `The ${keys[0] === 'requestId' ? 'X-Request-ID' : 'trace id'} must be a non-empty string of at most 1024 characters.`,
    );
  return keys[0] === 'requestId' ? { requestId: v.trim() } : { traceId: v.trim().toLowerCase() };
}
