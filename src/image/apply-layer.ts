import fs from 'node:fs';
import path from 'node:path';
import { fsOps } from './fs-ops.js';
import { removeTree, lstatOrNull } from './atomic-fs.js';
import { OPAQUE_XATTR } from './store-layout.js';

/**
 * The copy fallback for hosts without overlayfs: applies one unpacked layer (overlayfs format, as the layer
 * cache stores it) on top of a tree, with overlay semantics: a 0:0 character device deletes, an opaque directory
 * hides everything below it, anything else replaces what was there. Hardlinks inside the layer stay hardlinks.
 * The source is our own verified layer directory and the destination is built only from it, so symlinks in
 * the destination are never followed (every call here works on the link itself).
 */
const COPIED_XATTR = /^(user\.|security\.capability$)/;

export function applyLayerDir(src: string, dst: string): void {
  const links = new Map<string, string>();
  applyDir(src, dst, links);
}

function applyDir(src: string, dst: string, links: Map<string, string>): void {
  const ops = fsOps();
  for (const name of fs.readdirSync(src)) {
    const s = path.join(src, name);
    const d = path.join(dst, name);
    const st = fs.lstatSync(s);
    const existing = lstatOrNull(d);
    if (st.isCharacterDevice() && st.rdev === 0) {
      if (existing) removeTree(d);
      continue;
    }
    if (st.isDirectory()) {
      const opaque = ops.fsLgetxattr(s, OPAQUE_XATTR)?.toString() === 'y';
      if (existing && (!existing.isDirectory() || opaque)) removeTree(d);
      if (!existing || !existing.isDirectory() || opaque) fs.mkdirSync(d, { mode: 0o700 });
      applyDir(s, d, links);
      copyMeta(s, d, st, false);
      continue;
    }
    if (existing) removeTree(d);
    const key = `${st.dev}:${st.ino}`;
    const first = st.nlink > 1 ? links.get(key) : undefined;
    if (first !== undefined) {
      fs.linkSync(first, d);
      continue;
    }
    if (st.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(s), d);
    else if (st.isFile()) fs.copyFileSync(s, d, fs.constants.COPYFILE_FICLONE);
    else if (st.isFIFO()) ops.fsMknod(d, fs.constants.S_IFIFO | 0o600, 0, 0);
    else continue; // the layer cache holds no other kinds of file
    if (st.nlink > 1) links.set(key, d);
    copyMeta(s, d, st, st.isSymbolicLink());
  }
}

function copyMeta(s: string, d: string, st: fs.Stats, symlink: boolean): void {
  const ops = fsOps();
  if (process.getuid?.() === 0) fs.lchownSync(d, st.uid, st.gid);
  if (!symlink) {
    fs.chmodSync(d, st.mode & 0o7777);
    for (const name of ops.fsLlistxattr(s)) {
      if (!COPIED_XATTR.test(name)) continue;
      const v = ops.fsLgetxattr(s, name);
      if (v) ops.fsLsetxattr(d, name, v);
    }
  }
  fs.lutimesSync(d, st.atime, st.mtime);
}
