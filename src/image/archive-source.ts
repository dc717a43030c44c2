import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { VrunError, errorMessage } from '../common/errors.js';
import { AutoDecompress, extractSink } from './layer-stream.js';
import { safeComponents } from './entry-names.js';

/**
 * A read-only view of an image archive's members by name: either a directory (an OCI layout on disk) or a tar
 * file (docker-archive, OCI archive) whose regular members are spooled to numbered files in a private scratch
 * directory. Member names never become paths, so a hostile archive cannot place anything; symlinked members
 * (old `docker save` de-duplicates layers that way) are resolved inside the archive only.
 */
export interface ArchiveSource {
  /** A readable file holding the member, or undefined if there is none. */
  file(name: string): string | undefined;
  /** Whether the file may be renamed into the store instead of copied. */
  readonly spooled: boolean;
  readonly what: string;
}

export const ARCHIVE_LIMITS = { members: 100_000, memberNameBytes: 4096, symlinkHops: 16 };

export function directorySource(dir: string): ArchiveSource {
  const root = path.resolve(dir);
  return {
    what: dir,
    spooled: false,
    file(name) {
      const parts = safeComponents(name, `${dir}`);
      const p = path.join(root, ...parts);
      try {
        return fs.statSync(p).isFile() ? p : undefined;
      } catch {
        return undefined;
      }
    },
  };
}

export async function tarSource(file: string, scratch: string): Promise<ArchiveSource> {
  const files = new Map<string, string>();
  const links = new Map<string, string>();
  const extract = tar.extract();
  const sink = extractSink(extract);
  let feedError: unknown;
  const input = fs.createReadStream(file, { highWaterMark: 1 << 20 });
  const decompress = new AutoDecompress(file);
  const feed = pipeline(input, decompress, sink).catch((err: unknown) => {
    feedError = err;
    extract.destroy(err instanceof Error ? err : new Error(String(err)));
  });
  let n = 0;
  try {
    for await (const entry of extract) {
      const h = entry.header;
      if (++n > ARCHIVE_LIMITS.members) throw new VrunError(`${file}: more than ${ARCHIVE_LIMITS.members} members`);
      const name = safeComponents(h.name, file).join('/');
      if (h.type === 'file' || h.type === 'contiguous-file') {
        const dest = path.join(scratch, `m${n}`);
        const fd = fs.openSync(dest, 'wx', 0o600);
        try {
          for await (const chunk of entry as AsyncIterable<Buffer>) {
            let off = 0;
            while (off < chunk.length) off += fs.writeSync(fd, chunk, off);
          }
        } finally {
          fs.closeSync(fd);
        }
        files.set(name, dest);
        links.delete(name);
      } else {
        for await (const _ of entry as AsyncIterable<Buffer>) void _;
        if (h.type === 'symlink' || h.type === 'link') {
          const target = h.type === 'link' ? h.linkname : path.posix.join(path.posix.dirname(name), h.linkname);
          links.set(name, safeComponents(path.posix.normalize(target).replace(/^\/+/, ''), `${file}: member "${name}"`).join('/'));
        }
      }
    }
    await feed;
    if (feedError !== undefined) throw feedError;
  } catch (err) {
    extract.destroy(new Error('aborted'));
    for (const st of [input, decompress, sink]) st.destroy();
    await feed;
    const first = feedError ?? err;
    if (first instanceof VrunError) throw first;
    throw new VrunError(`${file} is not a readable tar archive: ${errorMessage(first)}`);
  }
  return {
    what: file,
    spooled: true,
    file(name) {
      let cur = safeComponents(name, file).join('/');
      for (let hop = 0; hop < ARCHIVE_LIMITS.symlinkHops; hop++) {
        const f = files.get(cur);
        if (f) return f;
        const next = links.get(cur);
        if (next === undefined) return undefined;
        cur = next;
      }
      throw new VrunError(`${file}: member "${name}" is a symlink loop`);
    },
  };
}
