/**
 * Protocol buffers wire format: varints, tags and length-delimited fields. Every read is bounded by the
 * buffer it was given, so hostile bytes can only produce a ProtobufDecodeError, never an out-of-range
 * read or an unbounded allocation (lengths are checked against what is actually there before slicing).
 */

export const WireType = {
  Varint: 0,
  Fixed64: 1,
  LengthDelimited: 2,
  StartGroup: 3,
  EndGroup: 4,
  Fixed32: 5,
} as const;
export type WireType = (typeof WireType)[keyof typeof WireType];

const MAX_FIELD_NUMBER = 0x1fffffff;

export class ProtobufDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtobufDecodeError';
  }
}

export class ProtoReader {
  private pos = 0;

  constructor(private readonly buf: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  /** A varint of up to 10 bytes as an unsigned 64-bit bigint. */
  varint(): bigint {
    let result = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new ProtobufDecodeError('truncated varint');
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << BigInt(7 * i);
      if ((b & 0x80) === 0) return BigInt.asUintN(64, result);
    }
    throw new ProtobufDecodeError('varint longer than 10 bytes');
  }

  /** Low 32 bits of a varint: what proto3 does for uint32/int32/enum/bool fields. */
  varint32(): number {
    return Number(BigInt.asUintN(32, this.varint()));
  }

  tag(): { field: number; wireType: number } {
    const key = this.varint();
    if (key > 0xffffffffn) throw new ProtobufDecodeError('field key out of range');
    const k = Number(key);
    const field = k >>> 3;
    if (field === 0 || field > MAX_FIELD_NUMBER) throw new ProtobufDecodeError(`invalid field number ${field}`);
    return { field, wireType: k & 7 };
  }

  lengthDelimited(): Uint8Array {
    const len = this.varint();
    const remaining = this.buf.length - this.pos;
    if (len > BigInt(remaining)) throw new ProtobufDecodeError(`length ${len} exceeds the ${remaining} bytes left`);
    const n = Number(len);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  fixed(bytes: 4 | 8): Uint8Array {
    if (this.buf.length - this.pos < bytes) throw new ProtobufDecodeError(`truncated fixed${bytes * 8}`);
    const out = this.buf.subarray(this.pos, this.pos + bytes);
    this.pos += bytes;
    return out;
  }

  /** Skips an unknown field. Groups are proto2-only and never appear in these protocols, so they are refused. */
  skip(wireType: number): void {
    switch (wireType) {
      case WireType.Varint:
        this.varint();
        return;
      case WireType.Fixed64:
        this.fixed(8);
        return;
      case WireType.LengthDelimited:
        this.lengthDelimited();
        return;
      case WireType.Fixed32:
        this.fixed(4);
        return;
      default:
        throw new ProtobufDecodeError(`unsupported wire type ${wireType}`);
    }
  }
}

export class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];
  private length = 0;

  private push(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  varint(value: bigint): void {
    let v = BigInt.asUintN(64, value);
    const bytes: number[] = [];
    while (v >= 0x80n) {
      bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    bytes.push(Number(v));
    this.push(Uint8Array.from(bytes));
  }

  /** Fast path for values that fit in 32 unsigned bits (tags, lengths, uint32). */
  uvarint32(value: number): void {
    let v = value >>> 0;
    const bytes: number[] = [];
    while (v >= 0x80) {
      bytes.push((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    bytes.push(v);
    this.push(Uint8Array.from(bytes));
  }

  tag(field: number, wireType: WireType): void {
    // field << 3 overflows 32-bit int arithmetic for large field numbers; multiply instead.
    this.uvarint32(field * 8 + wireType);
  }

  bytes(field: number, data: Uint8Array): void {
    this.tag(field, WireType.LengthDelimited);
    this.uvarint32(data.length);
    this.push(data);
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }
}
