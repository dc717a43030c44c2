import fs from 'node:fs';
import path from 'node:path';
import { VrunError, errorMessage } from '../common/errors.js';
import { rootLogger } from '../common/log.js';
import { fsOps } from './fs-ops.js';
import { lstatOrNull } from './atomic-fs.js';
import { OPAQUE_XATTR } from './store-layout.js';
import { FileWriteQueue, MAX_RESERVE, type NewFileMeta } from './file-write-queue.js';
import type { TarEntry } from './tar-reader.js';
import type { ReadBuffers } from './read-buffers.js';
import { EntryMetadata } from './entry-metadata.js';
import { MAX_PATH, printable, safeComponents } from './entry-names.js';

/**
 * Where the current entry's data goes: a reserved batch slice, views held in the read buffers (small files of an
 * uncompressed layer file), an open file (large files), or nowhere.
 */
type EntrySink =
  | { kind: 'queue'; dest: string; slice: Buffer; fill: number; meta: NewFileMeta; label: string }
  | { kind: 'views'; dest: string; buffers: ReadBuffers; parts: Buffer[]; holds: (() => void)[]; meta: NewFileMeta; label: string }
  | { kind: 'stream'; dest: string; fd: number; meta: NewFileMeta; label: string }
  | { kind: 'discard' };

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';
/** Files up to this size are copied into a batch and created on the thread pool (FileWriteQueue); bigger ones stream. */
const QUEUED_FILE_MAX = MAX_RESERVE;

/**
 * Creates one layer's entries, in tar order, under `root` in overlayfs format: whiteouts become 0:0 character
 * devices, opaque directories get `trusted.overlay.opaque=y`. Every entry is confined to `root`: no name is
 * created or changed through a symlink, and a refusal names the entry.
 */
export class LayerWriter {
  entries = 0;
  readonly skippedDevices: string[] = [];
  /** Directories known to be real directories of this layer (not symlinks): skips repeated lstat calls. */
  private readonly knownDirs = new Set<string>();
  /** Paths this unpack created (the target starts empty), so new names skip an lstat. */
  private readonly created = new Set<string>();
  private readonly ops = fsOps();
  private readonly files = new FileWriteQueue();
  private readonly meta: EntryMetadata;

  constructor(
    private readonly root: string,
    private readonly what: string,
    private readonly maxEntries: number,
  ) {
    this.knownDirs.add('');
    this.meta = new EntryMetadata(root, what);
  }

  private sink: EntrySink = { kind: 'discard' };
  /** Set when the data handed to data() lies in these buffers and may be held there until written. */
  private views: ReadBuffers | null = null;

  /** From now on, data() gets views into `buffers`, which small files hold instead of copying. */
  keepViewsIn(buffers: ReadBuffers): void {
    this.views = buffers;
  }

  /** Starts an entry: everything but a regular file's data, which data() and end() take. */
  async begin(h: TarEntry): Promise<void> {
    this.sink = { kind: 'discard' };
    this.entries++;
    if (this.entries > this.maxEntries) {
      throw new VrunError(`${this.what} has more than ${this.maxEntries} entries (raise VRUN_IMAGE_MAX_LAYER_ENTRIES if this image is legitimate)`);
    }
    const name = h.name;
    const label = `${this.what}: entry "${printable(name)}"`;
    const parts = safeComponents(name, this.what);
    const type = h.type;
    if (parts.length === 0) {
      // The layer root ("./"): only its metadata, and only if it claims to be a directory.
      if (type === 'directory') this.meta.apply(this.root, h, true);
      return;
    }
    const base = parts[parts.length - 1] as string;
    const parentRel = parts.slice(0, -1).join('/');
    const parent = await this.ensureParent(parts.slice(0, -1), label);
    if (base.startsWith(WHITEOUT_PREFIX)) {
      await this.files.settle(); // whether the layer itself has the hidden name
      this.whiteout(parent, base, label);
      return;
    }
    const dest = path.join(parent, base);
    const rel = parentRel === '' ? base : `${parentRel}/${base}`;
    const existed = this.created.has(rel);
    this.created.add(rel);
    // Replacing a name this layer already wrote: its queued write must land first, and nothing queued may later
    // run through a parent that is about to be removed or replaced by a symlink.
    if (existed) await this.files.settle();
    switch (type) {
      case 'directory': {
        const st = existed ? lstatOrNull(dest) : null;
        if (st && !st.isDirectory()) this.remove(dest);
        if (!st || !st.isDirectory()) fs.mkdirSync(dest, { mode: 0o700 });
        this.knownDirs.add(rel);
        this.meta.apply(dest, h, true);
        return;
      }
      case 'file':
      case 'contiguous-file': {
        if (existed) this.clear(dest);
        const meta = this.meta.forNewFile(dest, h);
        if (h.size <= QUEUED_FILE_MAX && this.views) {
          this.sink = { kind: 'views', dest, buffers: this.views, parts: [], holds: [], meta, label };
        } else if (h.size <= QUEUED_FILE_MAX) {
          this.sink = { kind: 'queue', dest, slice: await this.files.reserve(h.size), fill: 0, meta, label };
        } else {
          const fd = wrapped(label, () => fs.openSync(dest, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600));
          this.sink = { kind: 'stream', dest, fd, meta, label };
        }
        return;
      }
      case 'symlink': {
        const target = h.linkname ?? '';
        if (target === '' || target.length > MAX_PATH || target.includes('\0')) throw new VrunError(`${label}: invalid symlink target`);
        if (existed) this.clear(dest);
        fs.symlinkSync(target, dest);
        this.meta.apply(dest, h, false, true);
        return;
      }
      case 'link': {
        await this.files.settle(); // the target may still be queued
        const linkParts = safeComponents(h.linkname ?? '', `${label} (hardlink target)`);
        if (linkParts.length === 0) throw new VrunError(`${label}: hardlink to the layer root`);
        const src = this.existingPath(linkParts, label);
        const sst = lstatOrNull(src);
        if (!sst) throw new VrunError(`${label}: hardlink target "${printable(h.linkname ?? '')}" is not in this layer (refused)`);
        if (sst.isDirectory()) throw new VrunError(`${label}: hardlink to a directory (refused)`);
        if (src === dest) return;
        if (existed) this.clear(dest);
        fs.linkSync(src, dest);
        return;
      }
      case 'fifo':
        if (existed) this.clear(dest);
        this.ops.fsMknod(dest, fs.constants.S_IFIFO | 0o600, 0, 0);
        this.meta.apply(dest, h, false);
        return;
      case 'character-device':
      case 'block-device':
        // Device nodes would reach the guest through virtio-fs, where opening one would be opened by virtiofsd on
        // the host. Containers get their /dev from the runtime, so image device nodes are never created.
        this.skippedDevices.push(rel);
        return;
      default:
        throw new VrunError(`${label}: unsupported tar entry type "${h.type.replace(/^unknown:/, '')}"`);
    }
  }

  /** Some of the current entry's data (a view the caller reuses once this returns). */
  data(chunk: Buffer): void {
    const sink = this.sink;
    if (sink.kind === 'views') {
      sink.holds.push(sink.buffers.hold(chunk));
      sink.parts.push(chunk);
    } else if (sink.kind === 'queue') {
      sink.fill += chunk.copy(sink.slice, sink.fill);
    } else if (sink.kind === 'stream') {
      wrapped(sink.label, () => {
        let off = 0;
        while (off < chunk.length) off += fs.writeSync(sink.fd, chunk, off);
      });
    }
  }

  /** The current entry's data is complete. */
  async end(): Promise<void> {
    const sink = this.sink;
    this.sink = { kind: 'discard' };
    if (sink.kind === 'views') {
      await this.files.add(sink.dest, sink.parts, sink.meta, sink.label, () => {
        for (const release of sink.holds) release();
      });
    } else if (sink.kind === 'queue') {
      await this.files.add(sink.dest, sink.slice.length > 0 ? [sink.slice] : [], sink.meta, sink.label);
    } else if (sink.kind === 'stream') {
      try {
        wrapped(sink.label, () => this.meta.applyToOpenFile(sink.fd, sink.dest, sink.meta));
      } finally {
        fs.closeSync(sink.fd);
      }
    }
  }

  async finish(): Promise<void> {
    await this.files.settle();
    this.meta.setDirTimes();
    if (this.skippedDevices.length > 0) {
      rootLogger().warn({ layer: this.what, devices: this.skippedDevices.slice(0, 20) }, 'device nodes in the layer were not created');
    }
  }

  /** Closes a file being streamed and waits for queued writes, ignoring their errors (the unpack already failed). */
  async abort(): Promise<void> {
    if (this.sink.kind === 'stream') fs.closeSync(this.sink.fd);
    this.sink = { kind: 'discard' };
    await this.files.settle().catch(() => undefined);
  }

  /** Creates missing parents as plain directories; refuses a parent that is a symlink or not a directory. */
  private async ensureParent(parts: string[], label: string): Promise<string> {
    let rel = '';
    let abs = this.root;
    for (const c of parts) {
      rel = rel === '' ? c : `${rel}/${c}`;
      abs = path.join(abs, c);
      if (this.knownDirs.has(rel)) continue;
      let st: fs.Stats | null = null;
      if (this.created.has(rel)) {
        await this.files.settle(); // a queued file of that name decides what the parent is
        st = lstatOrNull(abs);
      }
      this.created.add(rel);
      if (!st) {
        fs.mkdirSync(abs, { mode: 0o755 });
      } else if (st.isSymbolicLink()) {
        throw new VrunError(`${label}: parent "${printable(rel)}" is a symlink (refused: writing through it could escape the layer)`);
      } else if (!st.isDirectory()) {
        throw new VrunError(`${label}: parent "${printable(rel)}" is not a directory`);
      }
      this.knownDirs.add(rel);
    }
    return abs;
  }

  /** The path of an existing entry of this layer, reached without following any symlink. */
  private existingPath(parts: string[], label: string): string {
    let abs = this.root;
    let rel = '';
    for (const c of parts.slice(0, -1)) {
      rel = rel === '' ? c : `${rel}/${c}`;
      abs = path.join(abs, c);
      if (this.knownDirs.has(rel)) continue;
      const st = lstatOrNull(abs);
      if (!st || !st.isDirectory()) throw new VrunError(`${label}: hardlink target's parent "${printable(rel)}" is not a directory of this layer (refused)`);
    }
    return path.join(abs, parts[parts.length - 1] as string);
  }

  private whiteout(parent: string, base: string, label: string): void {
    if (base === OPAQUE_MARKER) {
      this.ops.fsLsetxattr(parent, OPAQUE_XATTR, Buffer.from('y'));
      return;
    }
    if (base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) return; // aufs bookkeeping (.wh..wh.plnk etc.)
    const hidden = base.slice(WHITEOUT_PREFIX.length);
    if (hidden === '' || hidden === '.' || hidden === '..') throw new VrunError(`${label}: invalid whiteout`);
    const dest = path.join(parent, hidden);
    // A whiteout hides lower layers only: if this layer itself has the entry, the entry stays.
    if (lstatOrNull(dest)) return;
    this.created.add(path.relative(this.root, dest));
    this.ops.fsMknod(dest, fs.constants.S_IFCHR | 0o600, 0, 0);
  }

  /** Makes room for a new non-directory entry. */
  private clear(dest: string): void {
    const st = lstatOrNull(dest);
    if (st) this.remove(dest, st);
  }

  private remove(dest: string, st = lstatOrNull(dest)): void {
    if (!st) return;
    if (st.isDirectory()) {
      fs.rmSync(dest, { recursive: true, force: true });
      this.knownDirs.clear();
      this.knownDirs.add('');
    } else {
      fs.unlinkSync(dest);
    }
  }
}

/** Runs a file system call for an entry, naming the entry if it fails. */
function wrapped<T>(label: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new VrunError(`${label}: ${errorMessage(err)}`, { cause: err });
  }
}
