import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, HEADER_LEN, MAX_BODY } from '../../../main/ingest/frames.ts';

const span = (n: number) => ({
  signal_source: 'ebpf',
  observation_point: 's-p',
  request_resource: `/api/items?id=${n}`,
});

describe('frame codec', () => {
  it('encodes the header of STREAM.md: magic TD, version 1, type, u32le length', () => {
    const f = encodeFrame('span', { a: 1 });
    expect([...f.subarray(0, 4)]).toEqual([0x54, 0x44, 1, 3]);
    expect(f.readUInt32LE(4)).toBe(f.length - HEADER_LEN);
    expect(JSON.parse(f.subarray(HEADER_LEN).toString())).toEqual({ a: 1 });
  });

  it('decodes frames split at every byte boundary', () => {
    const stream = Buffer.concat([
      encodeFrame('hello', { protocol_version: 1 }),
      encodeFrame('span', span(1)),
      encodeFrame('bye', { reason: 'duration' }),
    ]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new FrameDecoder();
      const frames = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
      expect(frames.map((f) => f.type)).toEqual(['hello', 'span', 'bye']);
      expect(d.faults).toEqual([]);
      expect(d.pendingBytes).toBe(0);
    }
  });

  it('decodes byte by byte', () => {
    const stream = Buffer.concat([encodeFrame('span', span(1)), encodeFrame('span', span(2))]);
    const d = new FrameDecoder();
    const frames = [];
    for (const b of stream) frames.push(...d.push(Buffer.from([b])));
    expect(frames.map((f) => f.body['request_resource'])).toEqual(['/api/items?id=1', '/api/items?id=2']);
  });

  it('keeps frames before garbage, reports one fault, and resyncs on the next frame', () => {
    const d = new FrameDecoder();
    const frames = d.push(
      Buffer.concat([encodeFrame('span', span(1)), Buffer.from('garbage bytes here!!'), encodeFrame('span', span(2))]),
    );
    expect(frames.map((f) => f.body['request_resource'])).toEqual(['/api/items?id=1', '/api/items?id=2']);
    expect(d.faults).toHaveLength(1);
    expect(d.faults[0]!.reason).toBe('bad_magic');
    expect(d.faults[0]!.message).toMatch(/Frames before it are kept/);
  });

  it('rejects an oversized length without buffering it, then resyncs', () => {
    const bad = Buffer.alloc(HEADER_LEN);
    bad.write('TD', 0, 'ascii');
    bad[2] = 1;
    bad[3] = 3;
    bad.writeUInt32LE(MAX_BODY + 1, 4);
    const d = new FrameDecoder();
    const frames = d.push(Buffer.concat([bad, encodeFrame('span', span(7))]));
    expect(d.faults.map((f) => f.reason)).toEqual(['oversized']);
    expect(frames.map((f) => f.body['request_resource'])).toEqual(['/api/items?id=7']);
  });

  it('reports a newer frame version with a sentence naming what to do', () => {
    const f = encodeFrame('span', span(1));
    f[2] = 9;
    const d = new FrameDecoder();
    expect(d.push(f)).toEqual([]);
    expect(d.faults[0]!.reason).toBe('bad_version');
    expect(d.faults[0]!.message).toMatch(/update Tapdeck or the collector/);
  });

  it('reports a body that is not JSON and keeps going', () => {
    const body = Buffer.from('{not json');
    const h = Buffer.alloc(HEADER_LEN);
    h.write('TD', 0, 'ascii');
    h[2] = 1;
    h[3] = 3;
    h.writeUInt32LE(body.length, 4);
    const d = new FrameDecoder();
    const frames = d.push(Buffer.concat([h, body, encodeFrame('stats', { final: true })]));
    expect(d.faults.map((f) => f.reason)).toEqual(['bad_json']);
    expect(frames.map((f) => f.type)).toEqual(['stats']);
  });

  it('skips and counts unknown frame types (forward compatible)', () => {
    const f = encodeFrame('span', span(1));
    f[3] = 200;
    const d = new FrameDecoder();
    expect(d.push(Buffer.concat([f, encodeFrame('bye', {})])).map((x) => x.type)).toEqual(['bye']);
    expect(d.unknownTypes).toBe(1);
    expect(d.faults).toEqual([]);
  });

  it('decodes the packet-capture frames: flow (type 4) and netns (type 8)', () => {
    const ns = encodeFrame('netns', { netns: 4026532178, names: ['tdlab-client'], host: false, interfaces: [] });
    expect(ns[3]).toBe(8);
    const fl = encodeFrame('flow', { flow_id: 1, final: true });
    expect(fl[3]).toBe(4);
    const d = new FrameDecoder();
    const frames = d.push(Buffer.concat([ns, fl]));
    expect(frames.map((f) => [f.type, f.body['netns'] ?? f.body['flow_id']])).toEqual([
      ['netns', 4026532178],
      ['flow', 1],
    ]);
    expect(d.unknownTypes).toBe(0);
  });

  it('reports a truncated stream through pendingBytes', () => {
    const f = encodeFrame('span', span(1));
    const d = new FrameDecoder();
    expect(d.push(f.subarray(0, f.length - 3))).toEqual([]);
    expect(d.pendingBytes).toBe(f.length - 3);
  });
});
