import { describe, expect, it } from 'vitest';
import { Request } from '../../src/ttrpc/messages.js';
import { ProtobufDecodeError } from '../../src/ttrpc/protobuf/wire.js';
import { Timestamp, dateFromTimestamp, timestampFromDate } from '../../src/ttrpc/protobuf/well-known.js';
import * as taskMessages from '../../src/shim/protocol/task-messages.js';
import * as eventMessages from '../../src/shim/protocol/event-messages.js';

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);

describe('protobuf decoding of hostile input', () => {
  it('rejects truncated and overlong varints, lengths past the end, bad field numbers and groups', () => {
    const cases: [Uint8Array, RegExp][] = [
      [bytes(0x20, 0x80), /truncated varint/],
      [bytes(0x20, ...Array<number>(11).fill(0xff)), /longer than 10 bytes/],
      [bytes(0x0a, 0x05, 0x61), /exceeds the 1 bytes left/],
      [bytes(0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f), /exceeds/],
      [bytes(0x00, 0x01), /invalid field number 0/],
      [bytes(0x5b, 0x01), /unsupported wire type 3/],
      [bytes(0x7d, 0x01), /truncated fixed32/],
    ];
    for (const [input, message] of cases) {
      expect(() => Request.decode(input), message.source).toThrow(ProtobufDecodeError);
      expect(() => Request.decode(input)).toThrow(message);
    }
  });

  it('rejects a known field sent with the wrong wire type, naming the field', () => {
    expect(() => Request.decode(bytes(0x08, 0x01))).toThrow(/ttrpc\.Request\.service: wire type 0, expected 2/);
  });

  it('rejects strings that are not UTF-8', () => {
    expect(() => Request.decode(bytes(0x0a, 0x02, 0xc3, 0x28))).toThrow(/service: string is not valid UTF-8/);
  });

  it('rejects int64 values a JS number cannot hold exactly', () => {
    const w = [0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]; // 2^63-1
    expect(() => Request.decode(bytes(...w))).toThrow(/timeoutNano: int64 9223372036854775807 is beyond the safe integer range/);
    expect(Request.decode(bytes(0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)).timeoutNano).toBe(-1);
  });

  it('skips unknown fields of every wire type', () => {
    const withUnknown = bytes(0x0a, 0x01, 0x73, 0xf8, 0x01, 0x05, 0xf9, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0xfd, 0x01, 1, 2, 3, 4, 0xfa, 0x01, 0x00);
    expect(Request.decode(withUnknown).service).toBe('s');
  });

  it('keeps map keys such as __proto__ as plain data', () => {
    const encoded = taskMessages.UpdateTaskRequest.encode({ annotations: { ['__proto__']: 'x', constructor: 'y' } });
    const decoded = taskMessages.UpdateTaskRequest.decode(encoded);
    expect(Object.getPrototypeOf(decoded.annotations)).toBe(Object.prototype);
    expect(Object.keys(decoded.annotations).sort()).toEqual(['__proto__', 'constructor']);
    expect(Object.getOwnPropertyDescriptor(decoded.annotations, '__proto__')?.value).toBe('x');
  });

  it('refuses to encode values outside a field type instead of truncating them', () => {
    expect(() => taskMessages.KillRequest.encode({ signal: -1 })).toThrow(/KillRequest\.signal: -1 is out of uint32 range/);
    expect(() => taskMessages.KillRequest.encode({ signal: 1.5 })).toThrow(/expected an integer/);
  });

  it('never throws anything but ProtobufDecodeError on random bytes', () => {
    let seed = 12345;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const types = [Request, ...Object.values(taskMessages), ...Object.values(eventMessages)].filter((t) => typeof t === 'object' && 'decode' in t);
    let decodedOk = 0;
    for (let i = 0; i < 3000; i++) {
      const input = Uint8Array.from({ length: rand() % 64 }, () => rand() & 0xff);
      for (const t of types) {
        try {
          t.decode(input);
          decodedOk++;
        } catch (err) {
          expect(err).toBeInstanceOf(ProtobufDecodeError);
        }
      }
    }
    expect(decodedOk).toBeGreaterThan(0);
  });

  it('converts timestamps to and from Date, before and after the epoch', () => {
    for (const d of [new Date('2024-02-29T12:34:56.789Z'), new Date('1960-01-01T00:00:00.001Z'), new Date(0)]) {
      const ts = timestampFromDate(d);
      expect(ts.nanos).toBeGreaterThanOrEqual(0);
      expect(ts.nanos).toBeLessThan(1e9);
      expect(dateFromTimestamp(Timestamp.decode(Timestamp.encode(ts))).toISOString()).toBe(d.toISOString());
    }
  });
});
