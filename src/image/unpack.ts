import fs from 'node:fs';
import path from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { VrunError, errorMessage } from '../common/errors.js';
import { rootLogger } from '../common/log.js';
import type { Digest } from './digest.js';
import { fsOps } from './fs-ops.js';
import { AutoDecompress, detectCompression, type Compression } from './layer-stream.js';
import { HashingStream } from './hashing-stream.js';
import { lstatOrNull } from './atomic-fs.js';
import { OPAQUE_XATTR } from './store-layout.js';
import { FileWriteQueue, MAX_RESERVE, type NewFileMeta } from './file-write-queue.js';
import { TarReader, type TarEntry } from './tar-reader.js';
import { ReadBuffers } from './read-buffers.js';

/**
 * Unpacks one layer tar into its own directory in overlayfs format (whiteouts become 0:0 character devices,
 * opaque directories get `trusted.overlay.opaque=y`), so layers can be stacked by overlayfs or applied in order
 * by the copy fallback. The layer is hostile: every entry name is checked so nothing is created or changed
 * outside the target, never through a symlink, and every refusal names the entry.
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
/** xattrs a layer may set: user data and file capabilities. trusted.* (overlay metadata) and security labels are host business. */
const ALLOWED_XATTR = /^(user\.|security\.capability$)/;
const MAX_PATH = 4096;
/** Files up to this size are copied into a batch and created on the thread pool (FileWriteQueue); bigger ones stream. */
const QUEUED_FILE_MAX = MAX_RESERVE;
const MAX_COMPONENT = 255;
const SET_GROUP_ID = 0o2000;

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
  const writer = new LayerWriter(target, what, limits);
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

/** Splits and checks an entry path; returns its components relative to the layer root ([] for the root). */
export function safeComponents(name: string, what: string): string[] {
  if (name.length > MAX_PATH) throw new VrunError(`${what}: entry name longer than ${MAX_PATH} bytes ("${name.slice(0, 80)}...")`);
  if (name.includes('\0')) throw new VrunError(`${what}: entry "${printable(name)}" contains a NUL byte`);
  if (name.startsWith('/')) throw new VrunError(`${what}: entry "${printable(name)}" has an absolute path (refused: layers must be relative)`);
  const parts: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') throw new VrunError(`${what}: entry "${printable(name)}" contains ".." (refused: it would escape the layer)`);
    if (Buffer.byteLength(c) > MAX_COMPONENT) throw new VrunError(`${what}: entry "${printable(name)}" has a component longer than ${MAX_COMPONENT} bytes`);
    parts.push(c);
  }
  return parts;
}

function printable(s: string): string {
  const t = s.length > 200 ? `${s.slice(0, 200)}...` : s;
  // eslint-disable-next-line no-control-regex
  return t.replace(/[\x00-\x1f\x7f]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

class LayerWriter {
  entries = 0;
  readonly skippedDevices: string[] = [];
  /** Directories known to be real directories of this layer (not symlinks): skips repeated lstat calls. */
  private readonly knownDirs = new Set<string>();
  private readonly dirTimes: [string, Date][] = [];
  /** Paths this unpack created (the target starts empty), so new names skip an lstat. */
  private readonly created = new Set<string>();
  private readonly ops = fsOps();
  private readonly isRoot = process.getuid?.() === 0;
  private readonly files = new FileWriteQueue();
  /**
   * Whether a new file could get a group other than ours (a set-group-id directory passes its group on). Until
   * one appears, a file that belongs to 0:0 already has its owner when root creates it: no fchown (most files of
   * most layers).
   */
  private groupInherited: boolean;

  constructor(
    private readonly root: string,
    private readonly what: string,
    private readonly limits: UnpackLimits,
  ) {
    this.knownDirs.add('');
    this.groupInherited = (fs.statSync(root).mode & SET_GROUP_ID) !== 0;
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
    if (this.entries > this.limits.maxEntries) {
      throw new VrunError(`${this.what} has more than ${this.limits.maxEntries} entries (raise VRUN_IMAGE_MAX_LAYER_ENTRIES if this image is legitimate)`);
    }
    const name = h.name;
    const label = `${this.what}: entry "${printable(name)}"`;
    const parts = safeComponents(name, this.what);
    const type = h.type;
    if (parts.length === 0) {
      // The layer root ("./"): only its metadata, and only if it claims to be a directory.
      if (type === 'directory') this.applyMeta(this.root, h, true);
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
        this.applyMeta(dest, h, true);
        return;
      }
      case 'file':
      case 'contiguous-file': {
        if (existed) this.clear(dest);
        const meta = this.fileMeta(dest, h);
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
        this.applyMeta(dest, h, false, true);
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
        this.applyMeta(dest, h, false);
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
        wrapped(sink.label, () => this.applyFileMeta(sink.fd, sink.dest, sink.meta));
      } finally {
        fs.closeSync(sink.fd);
      }
    }
  }

  async finish(): Promise<void> {
    await this.files.settle();
    for (const [p, t] of this.dirTimes) fs.utimesSync(p, t, t);
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

  private applyMeta(p: string, h: TarEntry, isDir: boolean, isSymlink = false): void {
    const pax = h.pax ?? undefined;
    const uid = paxInt(pax?.uid) ?? h.uid;
    const gid = paxInt(pax?.gid) ?? h.gid;
    if (this.isRoot) fs.lchownSync(p, uid, gid);
    const mode = h.mode & 0o7777;
    if (isDir && (mode & SET_GROUP_ID) !== 0) this.groupInherited = true;
    if (!isSymlink) fs.chmodSync(p, mode);
    if (pax) this.applyXattrs(p, pax);
    const [sec, nsec] = entryMtime(h);
    const mtime = new Date(sec * 1000 + nsec / 1e6);
    if (isDir) this.dirTimes.push([p, mtime]);
    else fs.lutimesSync(p, mtime, mtime);
  }

  /** What a regular file gets once its data is written; the owner only where it differs from what creating it gives. */
  private fileMeta(p: string, h: TarEntry): NewFileMeta {
    const pax = h.pax ?? undefined;
    const uid = paxInt(pax?.uid) ?? h.uid;
    const gid = paxInt(pax?.gid) ?? h.gid;
    const owner: [number, number] | null = this.isRoot && (uid !== 0 || gid !== 0 || this.groupInherited) ? [uid, gid] : null;
    const [mtimeSec, mtimeNsec] = entryMtime(h);
    return { mode: h.mode & 0o7777, owner, mtimeSec, mtimeNsec, xattrs: pax ? this.xattrsOf(p, pax) : [] };
  }

  /** fileMeta through an open fd (a streamed file): no path lookups, and the mtime is set after the last write. */
  private applyFileMeta(fd: number, p: string, meta: NewFileMeta): void {
    if (meta.owner) fs.fchownSync(fd, meta.owner[0], meta.owner[1]);
    fs.fchmodSync(fd, meta.mode);
    for (const [name, value] of meta.xattrs) this.ops.fsLsetxattr(p, name, value);
    const t = meta.mtimeSec + meta.mtimeNsec / 1e9;
    fs.futimesSync(fd, t, t);
  }

  private applyXattrs(p: string, pax: Record<string, string>): void {
    for (const [name, value] of this.xattrsOf(p, pax)) this.ops.fsLsetxattr(p, name, value);
  }

  /** The entry's pax xattrs a layer may set, as name and value. */
  private xattrsOf(p: string, pax: Record<string, string>): [string, Buffer][] {
    const out: [string, Buffer][] = [];
    for (const [key, value] of Object.entries(pax)) {
      if (!key.startsWith('SCHILY.xattr.')) continue;
      const name = key.slice('SCHILY.xattr.'.length);
      if (!ALLOWED_XATTR.test(name)) {
        rootLogger().debug({ layer: this.what, path: p, xattr: name }, 'xattr not applied');
        continue;
      }
      // tar-stream hands pax values over as UTF-8 text; a binary value that did not survive that is dropped.
      if (value.includes('\ufffd')) {
        rootLogger().warn({ layer: this.what, path: p, xattr: name }, 'binary xattr value not representable, skipped');
        continue;
      }
      out.push([name, Buffer.from(value, 'utf8')]);
    }
    return out;
  }
}

function paxInt(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 && n <= 0xffffffff ? n : undefined;
}

/** The entry's mtime as [seconds, nanoseconds]: a pax mtime exactly as written (it may carry nanoseconds), else the header's. */
function entryMtime(h: TarEntry): [number, number] {
  const m = /^(-?\d{1,15})(?:\.(\d{1,9})\d*)?$/.exec(h.pax?.mtime ?? '');
  if (m) {
    const sec = Number(m[1]);
    const frac = Number((m[2] ?? '').padEnd(9, '0'));
    // A negative time with a fraction: -1.5 s is -2 s plus 0.5 s.
    return sec < 0 || m[1] === '-0' ? (frac === 0 ? [sec, 0] : [sec - 1, 1e9 - frac]) : [sec, frac];
  }
  return [h.mtime, 0];
}

/** Runs a file system call for an entry, naming the entry if it fails. */
function wrapped<T>(label: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new VrunError(`${label}: ${errorMessage(err)}`, { cause: err });
  }
}
