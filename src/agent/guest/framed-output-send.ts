/**
 * Lets grpc-js put the agent's output chunks on the wire without copying them.
 *
 * grpc-js frames every response message by copying it into a fresh buffer behind the 5-byte gRPC prefix
 * (BaseServerInterceptingCall.serializeMessage). For stdout/stderr that fresh 256 KiB buffer per message,
 * and the garbage collections its external memory triggers, were the largest cost of the agent's output
 * path. Output chunks already carry their frame (output-chunk-wire.ts), so for them the call's serializer
 * hands that frame over as it is; the read buffer under it is reused only after the stream's write
 * callback, which HTTP/2 runs once the bytes went out to the socket.
 *
 * No public grpc-js hook exists, so this reaches into the call's internals. It is installed only after a
 * self-check on the live call: grpc-js must frame a sample chunk byte for byte as the chunk frames itself.
 * Otherwise (another grpc-js version, an interceptor in between) the call keeps grpc-js's copying path.
 */
import { isWireChunk, wireChunkCopy } from './output-chunk-wire.js';

interface SerializingCall {
  serializeMessage: (value: unknown) => Buffer;
}

/** The grpc-js call under a server stream handler's `call`, if it has the shape this relies on. */
function serializingCallOf(call: object): SerializingCall | null {
  const inner: unknown = (call as { call?: unknown }).call;
  if (typeof inner !== 'object' || inner === null) return null;
  return typeof (inner as Partial<SerializingCall>).serializeMessage === 'function' ? (inner as SerializingCall) : null;
}

/** Returns whether the call now sends output chunks without a copy. */
export function sendWireChunksUncopied(call: object): boolean {
  const inner = serializingCallOf(call);
  if (!inner) return false;
  const grpcSerialize = inner.serializeMessage.bind(inner);
  const sample = wireChunkCopy(Buffer.from('vrun output frame check'));
  let viaGrpc: unknown;
  try {
    viaGrpc = grpcSerialize(sample);
  } catch {
    return false;
  }
  if (!Buffer.isBuffer(viaGrpc) || !viaGrpc.equals(sample.framed)) return false;
  inner.serializeMessage = (value: unknown) => (isWireChunk(value) ? value.framed : grpcSerialize(value));
  return true;
}
