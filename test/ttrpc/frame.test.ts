import { describe, expect, it } from 'vitest';
import { FRAME_HEADER_LENGTH, FrameReader, FrameType, MAX_FRAME_DATA_LENGTH, encodeFrame, type FrameEvent } from '../../src/ttrpc/frame.js';

function header(length: number, streamId: number, type: number, flags: number): Buffer {
  const b = Buffer.alloc(FRAME_HEADER_LENGTH);
  b.writeUInt32BE(length, 0);
  b.writeUInt32BE(streamId, 4);
  b[8] = type;
  b[9] = flags;
  return b;
}

function describeEvents(events: FrameEvent[]): unknown[] {
  return events.map((e) => (e.kind === 'frame' ? { ...e.header, data: e.data.toString() } : { oversized: e.header.length, streamId: e.header.streamId }));
}

describe('ttrpc frame codec', () => {
  it('writes the 10-byte big-endian header the protocol specifies', () => {
    const f = encodeFrame(0x01020304, FrameType.Response, 0x05, Buffer.from('abc'));
    expect([...f]).toEqual([0, 0, 0, 3, 1, 2, 3, 4, 2, 5, 0x61, 0x62, 0x63]);
  });

  it('refuses to encode more than 4 MiB of data', () => {
    expect(() => encodeFrame(1, FrameType.Request, 0, new Uint8Array(MAX_FRAME_DATA_LENGTH + 1))).toThrow(/exceeds the maximum/);
    expect(encodeFrame(1, FrameType.Request, 0, new Uint8Array(MAX_FRAME_DATA_LENGTH)).length).toBe(MAX_FRAME_DATA_LENGTH + FRAME_HEADER_LENGTH);
  });

  it('reassembles frames split at every byte and several frames in one chunk', () => {
    const stream = Buffer.concat([encodeFrame(1, FrameType.Request, 0, Buffer.from('hello')), encodeFrame(3, FrameType.Request, 2, Buffer.alloc(0)), encodeFrame(5, FrameType.Data, 1, Buffer.from('x'))]);
    const expected = [
      { length: 5, streamId: 1, type: 1, flags: 0, data: 'hello' },
      { length: 0, streamId: 3, type: 1, flags: 2, data: '' },
      { length: 1, streamId: 5, type: 3, flags: 1, data: 'x' },
    ];
    const whole = new FrameReader();
    expect(describeEvents(whole.push(stream))).toEqual(expected);

    const bytewise = new FrameReader();
    const events: FrameEvent[] = [];
    for (let i = 0; i < stream.length; i++) events.push(...bytewise.push(stream.subarray(i, i + 1)));
    expect(describeEvents(events)).toEqual(expected);
    expect(bytewise.pendingBytes).toBe(0);
  });

  it('reports an oversized frame from its header and skips its data without buffering it', () => {
    const reader = new FrameReader(16);
    const events: FrameEvent[] = [];
    events.push(...reader.push(header(1000, 7, FrameType.Request, 0)));
    for (let sent = 0; sent < 1000; sent += 100) {
      events.push(...reader.push(Buffer.alloc(100, 0xaa)));
      expect(reader.pendingBytes).toBe(0);
    }
    events.push(...reader.push(encodeFrame(9, FrameType.Request, 0, Buffer.from('ok'))));
    expect(describeEvents(events)).toEqual([
      { oversized: 1000, streamId: 7 },
      { length: 2, streamId: 9, type: 1, flags: 0, data: 'ok' },
    ]);
  });

  it('handles a header announcing 4 GiB (first byte non-zero) as oversized', () => {
    const reader = new FrameReader();
    const events = reader.push(header(0xffffffff, 1, FrameType.Request, 0));
    expect(describeEvents(events)).toEqual([{ oversized: 0xffffffff, streamId: 1 }]);
    expect(reader.push(Buffer.alloc(64 * 1024))).toEqual([]);
    expect(reader.pendingBytes).toBe(0);
  });
});
