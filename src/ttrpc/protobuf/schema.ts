/**
 * A small, typed protobuf (proto3) message codec driven by schemas written in TypeScript.
 *
 * Why hand-rolled rather than protobufjs at runtime: the TS types of every message are inferred from
 * the same schema object that drives encode/decode, so types and wire layout cannot drift apart and no
 * `any`-typed reflection objects leak into the shim; decoding is strict where the guest or a peer could
 * be hostile (wire-type mismatches, invalid UTF-8, out-of-range integers are errors, never coerced);
 * and it needs no runtime dependency. The .proto files under proto/containerd/ stay the source of truth:
 * test/ttrpc/protobuf-conformance.test.ts loads them with protobufjs and checks every schema here
 * against them, field by field, and cross-encodes messages in both directions.
 *
 * Supported: string, bytes, bool, (u)int32, (u)int64 (as safe-integer numbers), enums (open, as numbers),
 * nested messages, repeated fields (numeric ones packed, as proto3 does), and map<string, string>.
 */
import { ProtoReader, ProtoWriter, ProtobufDecodeError, WireType } from './wire.js';

export type ScalarKind = 'string' | 'bytes' | 'bool' | 'uint32' | 'int32' | 'int64' | 'uint64' | 'enum';

export interface ScalarField<K extends ScalarKind = ScalarKind, R extends boolean = boolean> {
  readonly no: number;
  readonly kind: K;
  readonly repeated: R;
}

export interface MessageField<T = unknown, I = unknown, R extends boolean = boolean> {
  readonly no: number;
  readonly kind: 'message';
  readonly repeated: R;
  readonly type: MessageType<T, I>;
}

/** map<string, string>: the only map shape these protocols use. */
export interface StringMapField {
  readonly no: number;
  readonly kind: 'map';
  readonly repeated: false;
}

export type FieldSpec = ScalarField | MessageField | StringMapField;
export type Shape = Readonly<Record<string, FieldSpec>>;

export interface MessageType<T, I> {
  /** Fully qualified protobuf name, e.g. "containerd.task.v2.CreateTaskRequest" (also the Any type URL). */
  readonly typeName: string;
  readonly shape: Shape;
  encode(value: I): Uint8Array;
  decode(bytes: Uint8Array): T;
  /** The decoded form of `value`: every scalar present with its default, exactly what decode would give. */
  create(value?: I): T;
}

type ScalarValue<K> = K extends 'string' ? string : K extends 'bytes' ? Uint8Array : K extends 'bool' ? boolean : number;

type DecodedValue<F> = F extends StringMapField
  ? Record<string, string>
  : F extends MessageField<infer T, infer _I, infer R>
    ? R extends true
      ? T[]
      : T
    : F extends ScalarField<infer K, infer R>
      ? R extends true
        ? ScalarValue<K>[]
        : ScalarValue<K>
      : never;

type InitValue<F> = F extends StringMapField
  ? Readonly<Record<string, string>>
  : F extends MessageField<infer _T, infer I, infer R>
    ? R extends true
      ? readonly I[]
      : I
    : F extends ScalarField<infer K, infer R>
      ? R extends true
        ? readonly ScalarValue<K>[]
        : ScalarValue<K>
      : never;

type SingularMessageKeys<S> = { [K in keyof S]: S[K] extends MessageField<unknown, unknown, false> ? K : never }[keyof S];
type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** The decoded message: scalars, repeated and map fields always present; singular sub-messages optional. */
export type Decoded<S extends Shape> = Simplify<
  { -readonly [K in Exclude<keyof S, SingularMessageKeys<S>>]: DecodedValue<S[K]> } & {
    -readonly [K in SingularMessageKeys<S>]?: DecodedValue<S[K]>;
  }
>;
/** What encode accepts: any subset of the fields; absent ones take their proto3 default. */
export type Init<S extends Shape> = { [K in keyof S]?: InitValue<S[K]> };

export type MessageOf<M> = M extends MessageType<infer T, infer _I> ? T : never;
export type InitOf<M> = M extends MessageType<infer _T, infer I> ? I : never;

function scalar<K extends ScalarKind>(kind: K) {
  return (no: number): ScalarField<K, false> => ({ no, kind, repeated: false });
}
function repeatedScalar<K extends ScalarKind>(kind: K) {
  return (no: number): ScalarField<K, true> => ({ no, kind, repeated: true });
}

/** Field builders: `pb.string(1)`, `pb.message(3, Timestamp)`, `pb.repeated.string(4)`, ... */
export const pb = {
  string: scalar('string'),
  bytes: scalar('bytes'),
  bool: scalar('bool'),
  uint32: scalar('uint32'),
  int32: scalar('int32'),
  int64: scalar('int64'),
  uint64: scalar('uint64'),
  enum: scalar('enum'),
  message: <T, I>(no: number, type: MessageType<T, I>): MessageField<T, I, false> => ({ no, kind: 'message', repeated: false, type }),
  stringMap: (no: number): StringMapField => ({ no, kind: 'map', repeated: false }),
  repeated: {
    string: repeatedScalar('string'),
    bytes: repeatedScalar('bytes'),
    uint32: repeatedScalar('uint32'),
    message: <T, I>(no: number, type: MessageType<T, I>): MessageField<T, I, true> => ({ no, kind: 'message', repeated: true, type }),
  },
};

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

function isVarintKind(kind: ScalarKind): boolean {
  return kind !== 'string' && kind !== 'bytes';
}

function defaultValue(spec: FieldSpec): unknown {
  if (spec.kind === 'map') return {};
  if (spec.repeated) return [];
  switch (spec.kind) {
    case 'message':
      return undefined;
    case 'string':
      return '';
    case 'bytes':
      return new Uint8Array(0);
    case 'bool':
      return false;
    default:
      return 0;
  }
}

function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  // defineProperty keeps keys such as "__proto__" from a peer as plain data instead of touching the prototype.
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

class Codec<S extends Shape> implements MessageType<Decoded<S>, Init<S>> {
  private readonly byNumber = new Map<number, { name: string; spec: FieldSpec }>();

  constructor(
    readonly typeName: string,
    readonly shape: S,
  ) {
    for (const [name, spec] of Object.entries(shape)) {
      if (this.byNumber.has(spec.no)) throw new Error(`${typeName}: field number ${spec.no} used twice`);
      this.byNumber.set(spec.no, { name, spec });
    }
  }

  create(value?: Init<S>): Decoded<S> {
    return this.decode(this.encode(value ?? {}));
  }

  encode(value: Init<S>): Uint8Array {
    const w = new ProtoWriter();
    const fields = value as Readonly<Record<string, unknown>>;
    for (const [name, spec] of Object.entries(this.shape)) {
      const v = fields[name];
      if (v === undefined || v === null) continue;
      this.encodeField(w, name, spec, v);
    }
    return w.finish();
  }

  private fail(name: string, what: string): never {
    throw new TypeError(`${this.typeName}.${name}: ${what}`);
  }

  private encodeField(w: ProtoWriter, name: string, spec: FieldSpec, v: unknown): void {
    if (spec.kind === 'map') {
      if (typeof v !== 'object' || v === null) this.fail(name, 'expected an object of strings');
      for (const [k, val] of Object.entries(v)) {
        if (typeof val !== 'string') this.fail(name, `value of key "${k}" is not a string`);
        const entry = new ProtoWriter();
        entry.bytes(1, utf8Encoder.encode(k));
        entry.bytes(2, utf8Encoder.encode(val));
        w.bytes(spec.no, entry.finish());
      }
      return;
    }
    if (spec.kind === 'message') {
      const items = spec.repeated ? this.asArray(name, v) : [v];
      for (const item of items) w.bytes(spec.no, spec.type.encode(item));
      return;
    }
    if (spec.repeated) {
      const items = this.asArray(name, v);
      if (isVarintKind(spec.kind)) {
        if (items.length === 0) return;
        const packed = new ProtoWriter();
        for (const item of items) this.writeVarintValue(packed, name, spec.kind, item);
        w.bytes(spec.no, packed.finish());
      } else {
        for (const item of items) w.bytes(spec.no, this.lengthDelimitedValue(name, spec.kind, item));
      }
      return;
    }
    if (isVarintKind(spec.kind)) {
      if (v === 0 || v === false) return;
      w.tag(spec.no, WireType.Varint);
      this.writeVarintValue(w, name, spec.kind, v);
    } else {
      const bytes = this.lengthDelimitedValue(name, spec.kind, v);
      if (bytes.length > 0) w.bytes(spec.no, bytes);
    }
  }

  private asArray(name: string, v: unknown): readonly unknown[] {
    if (!Array.isArray(v)) this.fail(name, 'expected an array');
    return v;
  }

  private lengthDelimitedValue(name: string, kind: ScalarKind, v: unknown): Uint8Array {
    if (kind === 'string') {
      if (typeof v !== 'string') this.fail(name, 'expected a string');
      return utf8Encoder.encode(v);
    }
    if (!(v instanceof Uint8Array)) this.fail(name, 'expected a Uint8Array');
    return v;
  }

  private writeVarintValue(w: ProtoWriter, name: string, kind: ScalarKind, v: unknown): void {
    if (kind === 'bool') {
      if (typeof v !== 'boolean') this.fail(name, 'expected a boolean');
      w.uvarint32(v ? 1 : 0);
      return;
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) this.fail(name, `expected an integer, got ${String(v)}`);
    switch (kind) {
      case 'uint32':
        if (v < 0 || v > 0xffffffff) this.fail(name, `${v} is out of uint32 range`);
        w.uvarint32(v);
        return;
      case 'int32':
      case 'enum':
        if (v < -0x80000000 || v > 0x7fffffff) this.fail(name, `${v} is out of int32 range`);
        w.varint(BigInt(v)); // negative values are sign-extended to 10 bytes, as proto3 requires
        return;
      case 'uint64':
        if (v < 0) this.fail(name, `${v} is out of uint64 range`);
        w.varint(BigInt(v));
        return;
      default:
        w.varint(BigInt(v));
    }
  }

  decode(bytes: Uint8Array): Decoded<S> {
    const out: Record<string, unknown> = {};
    for (const [name, spec] of Object.entries(this.shape)) {
      const d = defaultValue(spec);
      if (d !== undefined) out[name] = d;
    }
    const r = new ProtoReader(bytes);
    while (!r.done) {
      const { field, wireType } = r.tag();
      const known = this.byNumber.get(field);
      if (!known) {
        r.skip(wireType);
        continue;
      }
      this.decodeField(r, out, known.name, known.spec, wireType);
    }
    return out as Decoded<S>;
  }

  private decodeError(name: string, what: string): ProtobufDecodeError {
    return new ProtobufDecodeError(`${this.typeName}.${name}: ${what}`);
  }

  private expectWire(name: string, actual: number, expected: number): void {
    if (actual !== expected) throw this.decodeError(name, `wire type ${actual}, expected ${expected}`);
  }

  private decodeField(r: ProtoReader, out: Record<string, unknown>, name: string, spec: FieldSpec, wireType: number): void {
    if (spec.kind === 'map') {
      this.expectWire(name, wireType, WireType.LengthDelimited);
      const { key, value } = this.decodeMapEntry(name, r.lengthDelimited());
      setOwn(out[name] as Record<string, unknown>, key, value);
      return;
    }
    if (spec.kind === 'message') {
      this.expectWire(name, wireType, WireType.LengthDelimited);
      const msg = spec.type.decode(r.lengthDelimited());
      if (spec.repeated) (out[name] as unknown[]).push(msg);
      else out[name] = msg;
      return;
    }
    if (!isVarintKind(spec.kind)) {
      this.expectWire(name, wireType, WireType.LengthDelimited);
      const value = this.readLengthDelimitedValue(name, spec.kind, r.lengthDelimited());
      if (spec.repeated) (out[name] as unknown[]).push(value);
      else out[name] = value;
      return;
    }
    if (spec.repeated && wireType === WireType.LengthDelimited) {
      const packed = new ProtoReader(r.lengthDelimited());
      const list = out[name] as unknown[];
      while (!packed.done) list.push(this.readVarintValue(name, spec.kind, packed.varint()));
      return;
    }
    this.expectWire(name, wireType, WireType.Varint);
    const value = this.readVarintValue(name, spec.kind, r.varint());
    if (spec.repeated) (out[name] as unknown[]).push(value);
    else out[name] = value;
  }

  private decodeMapEntry(name: string, bytes: Uint8Array): { key: string; value: string } {
    const r = new ProtoReader(bytes);
    let key = '';
    let value = '';
    while (!r.done) {
      const { field, wireType } = r.tag();
      if (field === 1 || field === 2) {
        this.expectWire(name, wireType, WireType.LengthDelimited);
        const s = this.readLengthDelimitedValue(name, 'string', r.lengthDelimited()) as string;
        if (field === 1) key = s;
        else value = s;
      } else {
        r.skip(wireType);
      }
    }
    return { key, value };
  }

  private readLengthDelimitedValue(name: string, kind: ScalarKind, bytes: Uint8Array): string | Uint8Array {
    // A copy, as a plain Uint8Array: decoded values must not alias the frame buffer (Buffer#slice would).
    if (kind === 'bytes') return new Uint8Array(bytes);
    try {
      return utf8Decoder.decode(bytes);
    } catch {
      throw this.decodeError(name, 'string is not valid UTF-8');
    }
  }

  private readVarintValue(name: string, kind: ScalarKind, raw: bigint): number | boolean {
    switch (kind) {
      case 'bool':
        return raw !== 0n;
      case 'uint32':
        return Number(BigInt.asUintN(32, raw));
      case 'int32':
      case 'enum':
        return Number(BigInt.asIntN(32, raw));
      case 'int64': {
        const v = BigInt.asIntN(64, raw);
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw this.decodeError(name, `int64 ${v} is beyond the safe integer range`);
        return Number(v);
      }
      case 'uint64':
        if (raw > BigInt(Number.MAX_SAFE_INTEGER)) throw this.decodeError(name, `uint64 ${raw} is beyond the safe integer range`);
        return Number(raw);
      default:
        throw this.decodeError(name, `not a varint kind: ${kind}`);
    }
  }
}

export function message<S extends Shape>(typeName: string, shape: S): MessageType<Decoded<S>, Init<S>> {
  return new Codec(typeName, shape);
}
