import fs from 'node:fs';
import { VrunError } from '../common/errors.js';
import { isDigest, type Digest } from './digest.js';
import { withLock } from './lock.js';
import { lockFile, type StoreLayout } from './store-layout.js';
import { writeFileAtomic } from './atomic-fs.js';

/**
 * The list of complete images and the names pointing at them (refs.json). An image is recorded only after
 * its manifest, config and every layer are in the store, so anything listed here is usable. Updates are
 * read-modify-write under an exclusive lock with an atomic replace of the file.
 */
export interface ImageRecord {
  /** Digest of the platform manifest. */
  manifest: Digest;
  /** Digest of the image config: the image id. */
  config: Digest;
  /** Ordered diff ids, bottom layer first. */
  diffIds: Digest[];
  /** Normalised "registry/repo:tag" names. */
  names: string[];
  /** "registry/repo@sha256:..." digests the image was fetched by (an index digest, for instance). */
  repoDigests: string[];
  /** Compressed size of config + layers. */
  size: number;
  added: string;
}

interface RecordsFile {
  version: 1;
  images: ImageRecord[];
}

export function readRecords(l: StoreLayout): ImageRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(l.refsFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new VrunError(`the image store's index ${l.refsFile} is not valid JSON`);
  }
  const f = doc as Partial<RecordsFile>;
  if (f.version !== 1 || !Array.isArray(f.images)) throw new VrunError(`the image store's index ${l.refsFile} has an unknown format`);
  return f.images.filter((r) => isDigest(r.manifest) && isDigest(r.config) && Array.isArray(r.names) && Array.isArray(r.diffIds));
}

export async function updateRecords<T>(l: StoreLayout, fn: (images: ImageRecord[]) => T): Promise<T> {
  return withLock(lockFile(l, 'refs'), async () => {
    const images = readRecords(l);
    const out = fn(images);
    const file: RecordsFile = { version: 1, images };
    writeFileAtomic(l.refsFile, `${JSON.stringify(file, null, 1)}\n`);
    return out;
  });
}

/** Adds or refreshes an image; its names move away from any image that held them (like `docker tag`). */
export function upsertRecord(images: ImageRecord[], rec: ImageRecord): ImageRecord {
  for (const other of images) {
    if (other.manifest === rec.manifest) continue;
    other.names = other.names.filter((n) => !rec.names.includes(n));
  }
  const existing = images.find((r) => r.manifest === rec.manifest);
  if (existing) {
    existing.names = [...new Set([...existing.names, ...rec.names])];
    existing.repoDigests = [...new Set([...existing.repoDigests, ...rec.repoDigests])];
    return existing;
  }
  images.push(rec);
  return rec;
}
