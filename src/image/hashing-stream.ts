import { Transform, type TransformCallback } from 'node:stream';
import { VrunError } from '../common/errors.js';
import { hasherDigest, newHasher, type Digest } from './digest.js';

/**
 * Hashes what passes through (a blob digest before decompression, a diff id after) and enforces a hard byte
 * limit, which stops a decompression bomb while it inflates. Kept apart from the decompressors so storing a blob
 * does not load zlib.
 */
export class HashingStream extends Transform {
  private readonly hash = newHasher();
  private hashing = true;
  bytes = 0;
  private readonly maxBytes: number;
  private readonly what: string;

  constructor(opts: { maxBytes?: number; what?: string } = {}) {
    super();
    this.maxBytes = opts.maxBytes ?? Number.MAX_SAFE_INTEGER;
    this.what = opts.what ?? 'stream';
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.account(chunk);
    } catch (err) {
      cb(err as Error);
      return;
    }
    cb(null, chunk);
  }

  /** Counts, limits and hashes `chunk` without passing it on: for a caller that reads the bytes itself. */
  account(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      throw new VrunError(`${this.what} is larger than the limit of ${this.maxBytes} bytes (a decompression bomb, or raise VRUN_IMAGE_MAX_LAYER_BYTES)`);
    }
    if (this.hashing) this.hash.update(chunk);
  }

  /** Keeps counting and limiting but stops hashing (when another stage already hashes the same bytes). */
  stopHashing(): void {
    this.hashing = false;
  }

  digest(): Digest {
    return hasherDigest(this.hash);
  }
}
