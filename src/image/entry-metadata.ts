import fs from 'node:fs';
import { rootLogger } from '../common/log.js';
import { fsOps } from './fs-ops.js';
import type { NewFileMeta } from './file-write-queue.js';
import { paxText, type PaxRecords, type TarEntry } from './tar-reader.js';

/** xattrs a layer may set: user data and file capabilities. trusted.* (overlay metadata) and security labels are host business. */
const ALLOWED_XATTR = /^(user\.|security\.capability$)/;
const SET_GROUP_ID = 0o2000;

/**
 * Gives one layer's entries their owner (only when unpacking as root), mode, permitted xattrs and mtime.
 * Directory mtimes are set last (setDirTimes), since creating the entries inside a directory changes it.
 */
export class EntryMetadata {
  private readonly dirTimes: [string, Date][] = [];
  private readonly ops = fsOps();
  private readonly isRoot = process.getuid?.() === 0;
  /**
   * Whether a new file could get a group other than ours (a set-group-id directory passes its group on). Until
   * one appears, a file that belongs to 0:0 already has its owner when root creates it: no fchown (most files of
   * most layers).
   */
  private groupInherited: boolean;

  constructor(
    root: string,
    private readonly what: string,
  ) {
    this.groupInherited = (fs.statSync(root).mode & SET_GROUP_ID) !== 0;
  }

  /** Applies the entry's metadata to what is at `p` (not a regular file being written: see forNewFile). */
  apply(p: string, h: TarEntry, isDir: boolean, isSymlink = false): void {
    const [uid, gid] = entryOwner(h);
    if (this.isRoot) fs.lchownSync(p, uid, gid);
    const mode = h.mode & 0o7777;
    if (isDir && (mode & SET_GROUP_ID) !== 0) this.groupInherited = true;
    if (!isSymlink) fs.chmodSync(p, mode);
    if (h.pax) {
      for (const [name, value] of this.xattrsOf(p, h.pax)) this.ops.fsLsetxattr(p, name, value);
    }
    const [sec, nsec] = entryMtime(h);
    const mtime = new Date(sec * 1000 + nsec / 1e6);
    if (isDir) this.dirTimes.push([p, mtime]);
    else fs.lutimesSync(p, mtime, mtime);
  }

  /** What a regular file gets once its data is written; the owner only where it differs from what creating it gives. */
  forNewFile(p: string, h: TarEntry): NewFileMeta {
    const [uid, gid] = entryOwner(h);
    const owner: [number, number] | null = this.isRoot && (uid !== 0 || gid !== 0 || this.groupInherited) ? [uid, gid] : null;
    const [mtimeSec, mtimeNsec] = entryMtime(h);
    return { mode: h.mode & 0o7777, owner, mtimeSec, mtimeNsec, xattrs: h.pax ? this.xattrsOf(p, h.pax) : [] };
  }

  /** forNewFile's metadata through an open fd (a streamed file): no path lookups, and the mtime is set after the last write. */
  applyToOpenFile(fd: number, p: string, meta: NewFileMeta): void {
    if (meta.owner) fs.fchownSync(fd, meta.owner[0], meta.owner[1]);
    fs.fchmodSync(fd, meta.mode);
    for (const [name, value] of meta.xattrs) this.ops.fsLsetxattr(p, name, value);
    const t = meta.mtimeSec + meta.mtimeNsec / 1e9;
    fs.futimesSync(fd, t, t);
  }

  /** Once every entry is in place. */
  setDirTimes(): void {
    for (const [p, t] of this.dirTimes) fs.utimesSync(p, t, t);
  }

  /** The entry's pax xattrs a layer may set, as name and value (the raw bytes the archive holds). */
  private xattrsOf(p: string, pax: PaxRecords): [string, Buffer][] {
    const out: [string, Buffer][] = [];
    for (const [key, value] of Object.entries(pax)) {
      if (!key.startsWith('SCHILY.xattr.')) continue;
      const name = key.slice('SCHILY.xattr.'.length);
      if (!ALLOWED_XATTR.test(name)) {
        rootLogger().debug({ layer: this.what, path: p, xattr: name }, 'xattr not applied');
        continue;
      }
      out.push([name, value]);
    }
    return out;
  }
}

/** [uid, gid]: a pax uid/gid (ids past the header's range) where it is a valid id, else the header's. */
function entryOwner(h: TarEntry): [number, number] {
  return [paxInt(paxText(h.pax, 'uid')) ?? h.uid, paxInt(paxText(h.pax, 'gid')) ?? h.gid];
}

function paxInt(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 && n <= 0xffffffff ? n : undefined;
}

/** The entry's mtime as [seconds, nanoseconds]: a pax mtime exactly as written (it may carry nanoseconds), else the header's. */
function entryMtime(h: TarEntry): [number, number] {
  const m = /^(-?\d{1,15})(?:\.(\d{1,9})\d*)?$/.exec(paxText(h.pax, 'mtime') ?? '');
  if (m) {
    const sec = Number(m[1]);
    const frac = Number((m[2] ?? '').padEnd(9, '0'));
    // A negative time with a fraction: -1.5 s is -2 s plus 0.5 s.
    return sec < 0 || m[1] === '-0' ? (frac === 0 ? [sec, 0] : [sec - 1, 1e9 - frac]) : [sec, frac];
  }
  return [h.mtime, 0];
}
