import fs from 'node:fs';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { VrunError, errorMessage } from '../common/errors.js';
import type { Digest } from './digest.js';
import { AutoDecompress, detectCompression, type Compression } from './layer-stream.js';
import { HashingStream } from './hashing-stream.js';
import { TarReader } from './tar-reader.js';
import { ReadBuffers } from './read-buffers.js';
import { LayerWriter } from './layer-writer.js';

/**
 * Unpacks one layer tar into its own directory in overlayfs format, so layers can be stacked by overlayfs or
 * applied in order by the copy fallback: reads, decompresses, hashes and parses the tar, and hands its entries to
 * a LayerWriter, which confines the hostile layer to the target (layer-writer.ts).
 */

export interface UnpackLimits {
  /** Uncompressed bytes of the tar stream (headers included). */
  maxBytes: number;
  maxEntries: number;
}

export function defaultUnpackLimits(): UnpackLimits {
  return {
    maxBytes: envNumber('VRUN_IMAGE_MAX_LAYER_BYTES', 64 * 1024 ** 3),
    maxEntries: envNumber('VRUN_IMAGE_MAX_LAYER_ENTRIES', 2_000_000),
  };
}

function envNumber(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0) throw new VrunError(`invalid ${name}="${v}": expected a positive whole number`);
  return n;
}

export interface UnpackResult {
  /** sha256 of the bytes as they came in (the blob digest when the input is a blob). */
  compressedDigest: Digest;
  /** sha256 of the uncompressed tar: the layer's diff id. */
  diffId: Digest;
  compression: Compression;
  uncompressedBytes: number;
  entries: number;
  skippedDevices: string[];
}

export type UnpackOpts = {
  what: string;
  onBytes?: (n: number) => void;
  /**
   * The input is a store blob with this digest: the store hashed its bytes before giving it that name, so they
   * are not hashed again. The diff id of a compressed layer is still computed (only the image config vouches for
   * it); an uncompressed layer's diff id is this digest.
   */
  storedAs?: Digest;
};

/**
 * Unpacks the layer in `input` (a file's path, or a stream) into the empty directory `target`. A file that is not
 * compressed is read into reused buffers and parsed in place: small files are written from views into those
 * buffers, never copied (see ReadBuffers and FileWriteQueue on why fresh memory is what costs).
 */
export async function unpackLayer(input: Readable | string, target: string, opts: UnpackOpts & { limits?: UnpackLimits }): Promise<UnpackResult> {
  const limits = opts.limits ?? defaultUnpackLimits();
  const what = opts.what;
  if (fs.readdirSync(target).length > 0) throw new VrunError(`${what}: unpack target ${target} is not empty`);
  const writer = new LayerWriter(target, what, limits.maxEntries);
  const reader = new TarReader(what);
  try {
    const res = typeof input === 'string' ? await unpackFile(input, reader, writer, limits, opts) : await unpackStream(input, reader, writer, limits, opts);
    reader.end();
    await writer.finish();
    return { ...res, entries: writer.entries, skippedDevices: writer.skippedDevices };
  } catch (err) {
    // File writes still in flight must land before the caller removes the half-unpacked target.
    await writer.abort();
    if (err instanceof VrunError) throw err;
    throw new VrunError(`${what}: ${errorMessage(err)}`, { cause: err });
  }
}

type StreamResult = Omit<UnpackResult, 'entries' | 'skippedDevices'>;

const READ_BYTES = 1 << 20;

/**
 * An uncompressed layer file is read, hashed and parsed in reused buffers (ReadBuffers), one read ahead of the
 * parser; small files keep their data as views into them until written. A compressed file goes to unpackStream.
 */
async function unpackFile(file: string, reader: TarReader, writer: LayerWriter, limits: UnpackLimits, opts: UnpackOpts): Promise<StreamResult> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const buffers = new ReadBuffers(READ_BYTES);
    let buf = buffers.acquire();
    let { bytesRead } = await fh.read(buf, 0, READ_BYTES, 0);
    if (detectCompression(buf.subarray(0, bytesRead)) !== 'none') {
      return await unpackStream(fs.createReadStream(file, { highWaterMark: READ_BYTES }), reader, writer, limits, opts);
    }
    writer.keepViewsIn(buffers);
    // Not compressed: the blob digest is the diff id, one hash serves both.
    const hashing = new HashingStream({ maxBytes: limits.maxBytes, what: `${opts.what} (uncompressed)` });
    if (opts.storedAs) hashing.stopHashing();
    let position = 0;
    while (bytesRead > 0) {
      const chunk = buf.subarray(0, bytesRead);
      position += bytesRead;
      const nextBuf = buffers.acquire();
      const next = fh.read(nextBuf, 0, READ_BYTES, position);
      try {
        hashing.account(chunk);
        opts.onBytes?.(bytesRead);
        await consume(reader, writer, chunk);
      } catch (err) {
        // The read in flight must end before the file is closed under it.
        await next.catch(() => undefined);
        throw err;
      }
      // The parser is done with it; queued files may still hold parts of it.
      buffers.release(buf);
      buf = nextBuf;
      ({ bytesRead } = await next);
    }
    const digest = opts.storedAs ?? hashing.digest();
    return { compressedDigest: digest, diffId: digest, compression: 'none', uncompressedBytes: hashing.bytes };
  } finally {
    await fh.close();
  }
}

async function unpackStream(input: Readable, reader: TarReader, writer: LayerWriter, limits: UnpackLimits, opts: UnpackOpts): Promise<StreamResult> {
  const what = opts.what;
  const compressed = new HashingStream({ what });
  if (opts.storedAs) compressed.stopHashing();
  const decompress = new AutoDecompress(what);
  const uncompressed = new HashingStream({ maxBytes: limits.maxBytes, what: `${what} (uncompressed)` });
  // An uncompressed layer's diff id is its blob digest: hash those bytes once.
  decompress.once('compression', (c: Compression) => {
    if (c === 'none') uncompressed.stopHashing();
  });
  if (opts.onBytes) compressed.on('data', (c: Buffer) => opts.onBytes?.(c.length));
  let consuming: Promise<void> = Promise.resolve();
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      consuming = consume(reader, writer, chunk);
      consuming.then(() => cb(), cb);
    },
  });
  try {
    await pipeline(input, compressed, decompress, uncompressed, sink);
  } catch (err) {
    // A failing source ends the pipeline at once: the chunk being written must finish before the caller
    // cleans up, or it could still create files in a directory being removed.
    await consuming.catch(() => undefined);
    throw err;
  }
  const compressedDigest = opts.storedAs ?? compressed.digest();
  return {
    compressedDigest,
    diffId: decompress.compression === 'none' ? compressedDigest : uncompressed.digest(),
    compression: decompress.compression ?? 'none',
    uncompressedBytes: uncompressed.bytes,
  };
}

/** Hands one chunk's entries and data to the writer; the chunk may be reused once this resolves. */
async function consume(reader: TarReader, writer: LayerWriter, chunk: Buffer): Promise<void> {
  for (const ev of reader.feed(chunk)) {
    if (ev.kind === 'data') writer.data(ev.data);
    else if (ev.kind === 'entry') await writer.begin(ev.entry);
    else await writer.end();
  }
}
