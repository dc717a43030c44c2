/**
 * The protobuf encoding of an OutputChunk (`bytes data = 1`: tag 0x0a, varint length, the bytes), and the
 * gRPC message frame around it (a zero compression flag and the 32-bit big-endian length), built in place
 * in front of bytes read from a process: the agent's output path then copies nothing of its own, and
 * grpc-js can put the frame on the wire as it is (see framed-output-send.ts).
 */

/** The gRPC message prefix: compression flag (always 0: the agent never compresses) and length. */
const GRPC_PREFIX_BYTES = 5;

/** Room for the gRPC prefix, the tag and the longest varint length a read can need (5 bytes cover 32 GiB). */
export const OUTPUT_CHUNK_HEADROOM = GRPC_PREFIX_BYTES + 6;

const TAG_DATA_BYTES = 0x0a;

/** An OutputChunk message together with its encoding, with and without the gRPC frame. */
export interface WireChunk {
  data: Buffer;
  /** The protobuf encoding. */
  wire: Buffer;
  /** `wire` behind its gRPC message prefix, sharing its memory. */
  framed: Buffer;
}

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

/**
 * `slab` holds the data at [dataStart, dataStart + length) with at least OUTPUT_CHUNK_HEADROOM bytes
 * before it; the headers are written there and the message shares the slab's memory.
 */
export function wireChunkInPlace(slab: Buffer, dataStart: number, length: number): WireChunk {
  const start = dataStart - 1 - varintLength(length);
  const framedStart = start - GRPC_PREFIX_BYTES;
  if (framedStart < 0) throw new RangeError('no headroom for the OutputChunk header');
  const end = dataStart + length;
  slab[framedStart] = 0;
  slab.writeUInt32BE(end - start, framedStart + 1);
  slab[start] = TAG_DATA_BYTES;
  let at = start + 1;
  let n = length;
  while (n >= 0x80) {
    slab[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  slab[at] = n;
  return { data: slab.subarray(dataStart, end), wire: slab.subarray(start, end), framed: slab.subarray(framedStart, end) };
}

/** A copy of `data` as an OutputChunk message. */
export function wireChunkCopy(data: Uint8Array): WireChunk {
  const slab = Buffer.allocUnsafe(OUTPUT_CHUNK_HEADROOM + data.length);
  slab.set(data, OUTPUT_CHUNK_HEADROOM);
  return wireChunkInPlace(slab, OUTPUT_CHUNK_HEADROOM, data.length);
}

export function isWireChunk(m: unknown): m is WireChunk {
  if (typeof m !== 'object' || m === null) return false;
  const c = m as Partial<WireChunk>;
  return Buffer.isBuffer(c.wire) && Buffer.isBuffer(c.data) && Buffer.isBuffer(c.framed);
}
