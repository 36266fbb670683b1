// The collector stream (remote-collector/STREAM.md): 8-byte header (magic "TD",
// version, type, u32le length) then a JSON body. The decoder is incremental, never
// throws on bad input, keeps every frame decoded before a fault, and resynchronises
// on the next magic.

export const MAGIC0 = 0x54; // 'T'
export const MAGIC1 = 0x44; // 'D'
export const FRAME_VERSION = 1;
export const HEADER_LEN = 8;
export const MAX_BODY = 16 * 1024 * 1024;

export const FRAME_TYPES = {
  hello: 1,
  process: 2,
  span: 3,
  flow: 4,
  stats: 5,
  error: 6,
  bye: 7,
  netns: 8,
} as const;

export type FrameTypeName = keyof typeof FRAME_TYPES;
const TYPE_NAMES = new Map<number, FrameTypeName>(Object.entries(FRAME_TYPES).map(([k, v]) => [v, k as FrameTypeName]));

export interface Frame {
  type: FrameTypeName;
  body: Record<string, unknown>;
}

export interface FrameFault {
  /** Byte offset in the stream where the fault was found. */
  offset: number;
  reason: 'bad_magic' | 'bad_version' | 'oversized' | 'bad_json' | 'unknown_type';
  message: string;
}

export function encodeFrame(type: FrameTypeName, body: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(body), 'utf8');
  const header = Buffer.alloc(HEADER_LEN);
  header[0] = MAGIC0;
  header[1] = MAGIC1;
  header[2] = FRAME_VERSION;
  header[3] = FRAME_TYPES[type];
  header.writeUInt32LE(json.length, 4);
  return Buffer.concat([header, json]);
}

export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);
  /** Stream offset of buf[0]. */
  private base = 0;
  /** True while skipping garbage after a fault; one fault is reported per run. */
  private resyncing = false;
  readonly faults: FrameFault[] = [];
  unknownTypes = 0;

  /** Feeds bytes; returns the complete frames they finish. Faults accumulate in `faults`. */
  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Frame[] = [];
    let pos = 0;
    while (this.buf.length - pos >= HEADER_LEN) {
      const b = this.buf;
      if (b[pos] !== MAGIC0 || b[pos + 1] !== MAGIC1) {
        this.fault(pos, 'bad_magic', 'bytes that are not a frame header');
        pos = this.findMagic(pos + 1);
        continue;
      }
      const version = b[pos + 2]!;
      if (version !== FRAME_VERSION) {
        this.fault(
          pos,
          'bad_version',
          `frame version ${version}; this Tapdeck reads version ${FRAME_VERSION}: update Tapdeck or the collector so they match`,
        );
        pos = this.findMagic(pos + 1);
        continue;
      }
      const len = b.readUInt32LE(pos + 4);
      if (len > MAX_BODY) {
        this.fault(pos, 'oversized', `a frame of ${len} bytes, over the ${MAX_BODY}-byte limit`);
        pos = this.findMagic(pos + 1);
        continue;
      }
      if (b.length - pos < HEADER_LEN + len) break;
      const typeCode = b[pos + 3]!;
      const bodyBytes = b.subarray(pos + HEADER_LEN, pos + HEADER_LEN + len);
      const start = pos;
      pos += HEADER_LEN + len;
      const type = TYPE_NAMES.get(typeCode);
      if (!type) {
        this.unknownTypes++;
        continue;
      }
      let body: unknown;
      try {
        body = JSON.parse(bodyBytes.toString('utf8'));
      } catch {
        this.fault(start, 'bad_json', `a ${type} frame whose body is not JSON`);
        this.resyncing = false;
        continue;
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        this.fault(start, 'bad_json', `a ${type} frame whose body is not a JSON object`);
        this.resyncing = false;
        continue;
      }
      this.resyncing = false;
      out.push({ type, body: body as Record<string, unknown> });
    }
    this.base += pos;
    this.buf = pos === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(pos);
    return out;
  }

  /** Bytes held waiting for the rest of a frame. Non-zero at end of stream means truncation. */
  get pendingBytes(): number {
    return this.buf.length;
  }

  private findMagic(from: number): number {
    const b = this.buf;
    for (let i = from; i < b.length - 1; i++) if (b[i] === MAGIC0 && b[i + 1] === MAGIC1) return i;
    // Keep a trailing 'T' that may start the next magic.
    return b.length > from && b[b.length - 1] === MAGIC0 ? b.length - 1 : Math.max(from, b.length);
  }

  private fault(pos: number, reason: FrameFault['reason'], what: string): void {
    if (this.resyncing) return;
    this.resyncing = true;
    this.faults.push({
      offset: this.base + pos,
      reason,
      message: `Malformed collector output at byte ${this.base + pos}: ${what}. Frames before it are kept; skipping to the next frame.`,
    });
  }
}
