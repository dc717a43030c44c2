import { Transform, Writable, type TransformCallback } from 'node:stream';
import type tar from 'tar-stream';
import zlib from 'node:zlib';
import { VrunError } from '../common/errors.js';

/**
 * The decompression stage of a layer stream, chosen by the stream's magic bytes rather than by a media type an
 * archive could get wrong (hashing and the byte limit that stops a decompression bomb: hashing-stream.ts).
 */
export type Compression = 'gzip' | 'zstd' | 'none';

export function detectCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}

/** Decompresses whatever arrives, deciding the format from the first bytes. */
export class AutoDecompress extends Transform {
  private inner: Transform | undefined;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly what: string;
  compression: Compression | undefined;

  constructor(what: string) {
    super();
    this.what = what;
  }

  private start(): void {
    const head = Buffer.concat(this.pending);
    this.compression = detectCompression(head);
    this.emit('compression', this.compression);
    if (this.compression === 'gzip') this.inner = zlib.createGunzip({ chunkSize: 256 * 1024 });
    else if (this.compression === 'zstd') this.inner = zstdTransform();
    if (this.inner) {
      this.inner.on('data', (d: Buffer) => this.push(d));
      this.inner.on('error', (err: Error) => this.destroy(new VrunError(`${this.what}: ${this.compression} data is corrupt or truncated (${err.message})`)));
    }
  }

  private forward(chunk: Buffer, cb: TransformCallback): void {
    if (!this.inner) {
      cb(null, chunk);
      return;
    }
    if (this.inner.write(chunk)) cb();
    else this.inner.once('drain', () => cb());
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.compression === undefined) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes < 4) {
        cb();
        return;
      }
      this.start();
      const all = Buffer.concat(this.pending);
      this.pending = [];
      this.forward(all, cb);
      return;
    }
    this.forward(chunk, cb);
  }

  override _flush(cb: TransformCallback): void {
    if (this.compression === undefined) {
      this.start();
      const all = Buffer.concat(this.pending);
      this.pending = [];
      if (!this.inner) {
        cb(null, all);
        return;
      }
      this.inner.write(all);
    }
    const inner = this.inner;
    if (!inner) {
      cb();
      return;
    }
    let finished = false;
    const done = (err?: Error) => {
      if (finished) return;
      finished = true;
      cb(err ? new VrunError(`${this.what}: ${this.compression} data is corrupt or truncated (${err.message})`) : null);
    };
    inner.once('end', () => done());
    inner.once('error', (err: Error) => done(err));
    inner.end();
  }
}

/** fzstd is loaded on the first zstd layer: listing images or pulling should not pay for it. */
function zstdTransform(): Transform {
  let dec: { push(chunk: Uint8Array, final?: boolean): void } | undefined;
  const load = async (out: Transform) => {
    const { Decompress } = await import('fzstd');
    // fzstd reuses its window buffer: copy before handing the bytes on
    dec = new Decompress((data: Uint8Array) => out.push(Buffer.from(data)));
    return dec;
  };
  const run = (out: Transform, chunk: Uint8Array, final: boolean, cb: TransformCallback) => {
    const go = (d: NonNullable<typeof dec>) => {
      try {
        d.push(chunk, final);
        cb();
      } catch (err) {
        cb(err as Error);
      }
    };
    if (dec) go(dec);
    else load(out).then(go, (err: unknown) => cb(err as Error));
  };
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      run(this, chunk, false, cb);
    },
    flush(cb) {
      run(this, new Uint8Array(0), true, cb);
    },
  });
}

/**
 * A Node Writable feeding a tar-stream extractor with backpressure: tar-stream speaks streamx, so it cannot
 * sit in a node:stream pipeline() directly.
 */
export function extractSink(extract: tar.Extract): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (extract.write(chunk)) cb();
      else extract.once('drain', () => cb());
    },
    final(cb) {
      (extract as unknown as { end(): void }).end();
      cb();
    },
  });
}
