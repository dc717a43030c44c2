import { VrunError } from '../common/errors.js';

/**
 * The CLI <-> sandbox stream framing: after a connection's JSON request line, both sides exchange frames of
 * [type: u8][length: u32 BE][payload]. The same frames, stdout and stderr only, make up container.log, so
 * `vrun logs` replays the two streams apart and byte-exact.
 */
export const FrameType = {
  stdin: 1,
  stdout: 2,
  stderr: 3,
  stdinEof: 4,
  /** JSON {rows, cols} */
  resize: 5,
  /** JSON {signal} */
  signal: 6,
  /** JSON {exitCode, oomKilled} — the last frame of an attach or exec. */
  exit: 7,
  /** JSON {message} — the attach or exec failed; the connection closes after it. */
  error: 8,
  /** JSON {} — the process is running (sent once, before any output). */
  started: 9,
} as const;

export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

export const MAX_FRAME = 1 << 20;
const HEADER = 5;

export function encodeFrame(type: FrameTypeValue, payload: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  if (body.length > MAX_FRAME) throw new VrunError(`frame of ${body.length} bytes exceeds ${MAX_FRAME}`);
  const head = Buffer.alloc(HEADER);
  head.writeUInt8(type, 0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

export function encodeJsonFrame(type: FrameTypeValue, value: unknown): Buffer {
  return encodeFrame(type, JSON.stringify(value));
}

/** Incremental decoder; rejects unknown types and oversized frames instead of buffering without end. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): { type: FrameTypeValue; payload: Buffer }[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: { type: FrameTypeValue; payload: Buffer }[] = [];
    while (this.buf.length >= HEADER) {
      const type = this.buf.readUInt8(0);
      const len = this.buf.readUInt32BE(1);
      if (type < 1 || type > 9) throw new VrunError(`bad frame type ${type}`);
      if (len > MAX_FRAME) throw new VrunError(`frame of ${len} bytes exceeds ${MAX_FRAME}`);
      if (this.buf.length < HEADER + len) break;
      out.push({ type: type as FrameTypeValue, payload: this.buf.subarray(HEADER, HEADER + len) });
      this.buf = this.buf.subarray(HEADER + len);
    }
    return out;
  }

  /** Bytes of an incomplete trailing frame (e.g. a log file cut by a crash). */
  get pending(): number {
    return this.buf.length;
  }
}

export function parseJsonPayload(payload: Buffer, what: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(payload.toString('utf8'));
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new VrunError(`malformed ${what} frame`);
}
