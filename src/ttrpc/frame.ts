/**
 * ttrpc framing (containerd/ttrpc PROTOCOL.md): a 10-byte header — uint32 data length (big endian),
 * uint32 stream id (big endian), uint8 message type, uint8 flags — followed by the data. Data longer than
 * 4 MiB must be rejected. Client-initiated streams use odd ids.
 */

export const FRAME_HEADER_LENGTH = 10;
export const MAX_FRAME_DATA_LENGTH = 4 << 20;

export const FrameType = {
  Request: 0x1,
  Response: 0x2,
  /** Stream data (ttrpc >= 1.2 streaming); this implementation is unary-only and refuses it. */
  Data: 0x3,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export const FrameFlag = {
  RemoteClosed: 0x1,
  RemoteOpen: 0x2,
  NoData: 0x4,
} as const;

export interface FrameHeader {
  length: number;
  streamId: number;
  type: number;
  flags: number;
}

export function encodeFrame(streamId: number, type: FrameType, flags: number, data: Uint8Array, maxDataLength = MAX_FRAME_DATA_LENGTH): Buffer {
  if (data.length > maxDataLength) throw new RangeError(`ttrpc message of ${data.length} bytes exceeds the maximum of ${maxDataLength}`);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + data.length);
  frame.writeUInt32BE(data.length, 0);
  frame.writeUInt32BE(streamId >>> 0, 4);
  frame.writeUInt8(type, 8);
  frame.writeUInt8(flags & 0xff, 9);
  frame.set(data, FRAME_HEADER_LENGTH);
  return frame;
}

export function decodeHeader(bytes: Buffer): FrameHeader {
  return { length: bytes.readUInt32BE(0), streamId: bytes.readUInt32BE(4), type: bytes.readUInt8(8), flags: bytes.readUInt8(9) };
}

export type FrameEvent =
  | { kind: 'frame'; header: FrameHeader; data: Buffer }
  /** The header announced more than the maximum; its data is being skipped without being buffered. */
  | { kind: 'oversized'; header: FrameHeader };

/**
 * Reassembles frames from a byte stream. It never holds more than one header plus one maximum-size
 * frame plus the chunk being pushed: oversized frames are reported from their header and their data is
 * discarded as it arrives, the same recovery containerd's own ttrpc does, so one bad call does not cost
 * the connection.
 */
export class FrameReader {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private header: FrameHeader | undefined;
  private skipRemaining = 0;

  constructor(private readonly maxDataLength = MAX_FRAME_DATA_LENGTH) {}

  /** Bytes held waiting for the rest of a frame. */
  get pendingBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): FrameEvent[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const events: FrameEvent[] = [];
    while (true) {
      if (this.skipRemaining > 0) {
        if (this.buffered === 0) break;
        const n = Math.min(this.skipRemaining, this.buffered);
        this.drop(n);
        this.skipRemaining -= n;
        continue;
      }
      if (!this.header) {
        if (this.buffered < FRAME_HEADER_LENGTH) break;
        const header = decodeHeader(this.take(FRAME_HEADER_LENGTH));
        if (header.length > this.maxDataLength) {
          this.skipRemaining = header.length;
          events.push({ kind: 'oversized', header });
          continue;
        }
        this.header = header;
      }
      if (this.buffered < this.header.length) break;
      events.push({ kind: 'frame', header: this.header, data: this.take(this.header.length) });
      this.header = undefined;
    }
    return events;
  }

  private drop(n: number): void {
    let left = n;
    while (left > 0) {
      const c = this.chunks[0]!;
      if (c.length <= left) {
        this.chunks.shift();
        left -= c.length;
      } else {
        this.chunks[0] = c.subarray(left);
        left = 0;
      }
    }
    this.buffered -= n;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const m = Math.min(c.length, n - off);
      c.copy(out, off, 0, m);
      off += m;
      if (m === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(m);
    }
    this.buffered -= n;
    return out;
  }
}
