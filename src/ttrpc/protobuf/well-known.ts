/** google.protobuf well-known types used by the ttrpc and containerd protocols, with Date conversions. */
import { message, pb, type MessageOf } from './schema.js';

export const Empty = message('google.protobuf.Empty', {});
export type Empty = MessageOf<typeof Empty>;

export const Any = message('google.protobuf.Any', {
  typeUrl: pb.string(1),
  value: pb.bytes(2),
});
export type Any = MessageOf<typeof Any>;

export const Timestamp = message('google.protobuf.Timestamp', {
  seconds: pb.int64(1),
  nanos: pb.int32(2),
});
export type Timestamp = MessageOf<typeof Timestamp>;

export function timestampFromDate(date: Date): Timestamp {
  const ms = date.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1_000_000 };
}

/** Nanoseconds beyond millisecond precision are dropped, as Date cannot hold them. */
export function dateFromTimestamp(ts: Timestamp): Date {
  return new Date(ts.seconds * 1000 + Math.floor(ts.nanos / 1_000_000));
}

/** Wraps an encoded message in an Any whose type URL is the message's full name (containerd's convention). */
export function packAny<I>(type: { typeName: string; encode(value: I): Uint8Array }, value: I): Any {
  return { typeUrl: type.typeName, value: type.encode(value) };
}
