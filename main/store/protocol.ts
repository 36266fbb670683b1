// Messages between `Store` and its worker.

import type { FlowQuery, RequestQuery } from '../api/contract.ts';
import type { Flow, NetnsRecord } from '../api/records.ts';
import type { TraceStart } from '../api/trace.ts';
import type { CaptureUpdate, NewCapture, ProcessRecord } from './db.ts';

export type StoreRequest = { id?: number } & (
  | { op: 'appendSpans'; captureId: number; values: string } // spanValues() (db.ts) as JSON text
  | { op: 'upsertFlows'; captureId: number; flows: Flow[] }
  | { op: 'upsertNetns'; captureId: number; netns: NetnsRecord }
  | { op: 'queryFlows'; query: FlowQuery }
  | { op: 'flush' }
  | { op: 'createCapture'; capture: NewCapture }
  | { op: 'updateCapture'; update: CaptureUpdate }
  | { op: 'upsertProcess'; captureId: number; process: ProcessRecord }
  | { op: 'listCaptures' }
  | { op: 'getCapture'; captureId: number }
  | { op: 'querySpans'; query: RequestQuery }
  | { op: 'trace'; start: TraceStart }
  | { op: 'close' }
);

export type StoreResponse =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: { name: string; message: string; code?: string; status?: number } };
