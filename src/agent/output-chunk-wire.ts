/**
 * The protobuf encoding of an OutputChunk (`bytes data = 1`: tag 0x0a, varint length, the bytes), built
 * in place in front of bytes read from a process: the agent's output path then needs no copy of its own
 * before grpc-js frames the message.
 */

/** Room for the tag and the longest varint length a read can need (5 bytes cover 32 GiB). */
export const OUTPUT_CHUNK_HEADROOM = 6;

const TAG_DATA_BYTES = 0x0a;

/** An OutputChunk message together with its encoding. */
export interface WireChunk {
  data: Buffer;
  wire: Buffer;
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
 * before it; the header is written there and the message shares the slab's memory.
 */
export function wireChunkInPlace(slab: Buffer, dataStart: number, length: number): WireChunk {
  const start = dataStart - 1 - varintLength(length);
  if (start < 0) throw new RangeError('no headroom for the OutputChunk header');
  slab[start] = TAG_DATA_BYTES;
  let at = start + 1;
  let n = length;
  while (n >= 0x80) {
    slab[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  slab[at] = n;
  return { data: slab.subarray(dataStart, dataStart + length), wire: slab.subarray(start, dataStart + length) };
}

/** A copy of `data` as an OutputChunk message. */
export function wireChunkCopy(data: Uint8Array): WireChunk {
  const slab = Buffer.allocUnsafe(OUTPUT_CHUNK_HEADROOM + data.length);
  slab.set(data, OUTPUT_CHUNK_HEADROOM);
  return wireChunkInPlace(slab, OUTPUT_CHUNK_HEADROOM, data.length);
}

export function isWireChunk(m: unknown): m is WireChunk {
  return typeof m === 'object' && m !== null && Buffer.isBuffer((m as Partial<WireChunk>).wire) && Buffer.isBuffer((m as Partial<WireChunk>).data);
}
