// Turning anything thrown by a core handler into the `ApiErrorBody` that crosses the
// bridge (HTTP or IPC). The message is the core's sentence for the user, unchanged.

import type { ApiErrorBody } from '../api/contract.ts';
import { CodedError } from '../errors.ts';

/** An error the bridge itself raises, with the HTTP status it maps to. */
export class BridgeError extends CodedError<string> {
  override name = 'BridgeError';
  readonly status: number;

  constructor(status: number, code: string, message: string) {
    super(code, message);
    this.status = status;
  }
}

export function toErrorBody(err: unknown): ApiErrorBody {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return {
      code: typeof code === 'string' && code ? code : err.name || 'Error',
      message:
        err.message || 'Something went wrong in Tapdeck; the log of the process that serves the app has details.',
    };
  }
  return { code: 'Error', message: String(err) };
}

/** The HTTP status for an error: a BridgeError's own, a 4xx/5xx the error carries, or 500. */
export function httpStatusOf(err: unknown): number {
  const status = (err as { status?: unknown } | null)?.status;
  return typeof status === 'number' && status >= 400 && status <= 599 ? status : 500;
}
