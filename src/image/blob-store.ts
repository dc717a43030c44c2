import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { VrunError } from '../common/errors.js';
import { sha256, type Digest } from './digest.js';
import { HashingStream } from './hashing-stream.js';
import { blobPath, type StoreLayout } from './store-layout.js';
import { syncDir, tempName } from './atomic-fs.js';

/**
 * Content-addressed blobs. A blob only ever appears under its final name after its bytes were hashed and
 * matched the name, so anything found in blobs/ is trusted without re-reading it.
 */
export function hasBlob(l: StoreLayout, d: Digest): boolean {
  return fs.existsSync(blobPath(l, d));
}

/** Stores bytes, checking them against `expected` when given; returns the digest. */
export function putBlobBytes(l: StoreLayout, data: Uint8Array, expected?: Digest, what = 'blob'): Digest {
  const d = sha256(data);
  if (expected !== undefined && d !== expected) throw new VrunError(`${what}: content digest ${d} does not match the expected ${expected} (refused)`);
  const final = blobPath(l, d);
  if (fs.existsSync(final)) return d;
  fs.mkdirSync(l.blobs, { recursive: true });
  fs.mkdirSync(l.tmp, { recursive: true });
  const tmp = tempName(l.tmp, 'blob');
  try {
    const fd = fs.openSync(tmp, 'wx', 0o644);
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, final);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  syncDir(l.blobs);
  return d;
}

/**
 * Moves (or copies) a file into the store after hashing it. `moveOk` lets a file the caller owns in the
 * store's tmp/ be renamed instead of copied.
 */
export async function putBlobFile(l: StoreLayout, file: string, expected: Digest | undefined, what: string, opts: { moveOk?: boolean; size?: number } = {}): Promise<Digest> {
  const hasher = new HashingStream({ what });
  await pipeline(fs.createReadStream(file, { highWaterMark: 1 << 20 }), hasher, async (src: AsyncIterable<Buffer>) => {
    for await (const _ of src) void _;
  });
  const d = hasher.digest();
  if (expected !== undefined && d !== expected) throw new VrunError(`${what}: content digest ${d} does not match the expected ${expected} (refused)`);
  if (opts.size !== undefined && hasher.bytes !== opts.size) throw new VrunError(`${what}: size ${hasher.bytes} does not match the declared ${opts.size} (refused)`);
  const final = blobPath(l, d);
  if (fs.existsSync(final)) return d;
  fs.mkdirSync(l.blobs, { recursive: true });
  if (opts.moveOk && path.dirname(path.resolve(file)).startsWith(path.resolve(l.root))) {
    fs.renameSync(file, final);
  } else {
    fs.mkdirSync(l.tmp, { recursive: true });
    const tmp = tempName(l.tmp, 'blob');
    try {
      fs.copyFileSync(file, tmp, fs.constants.COPYFILE_FICLONE);
      fs.renameSync(tmp, final);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
  syncDir(l.blobs);
  return d;
}

/** Reads a small blob (manifest, config), re-checking its digest so on-disk corruption is caught. */
export function readBlob(l: StoreLayout, d: Digest, maxBytes: number, what: string): Buffer {
  const p = blobPath(l, d);
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    throw new VrunError(`${what} ${d} is not in the image store`);
  }
  if (st.size > maxBytes) throw new VrunError(`${what} ${d} is ${st.size} bytes, more than the limit of ${maxBytes}`);
  const data = fs.readFileSync(p);
  if (sha256(data) !== d) throw new VrunError(`${what} ${d} in the image store is corrupt (its content no longer matches its digest): remove the image and pull it again`);
  return data;
}
