import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { fsOps } from '../../src/image/fs-ops.js';

/** A fresh directory under /var/tmp (on the same ext4 as the store, so overlayfs and renames behave as in production). */
export function tempDir(prefix: string): string {
  const base = fs.existsSync('/var/tmp') ? '/var/tmp' : os.tmpdir();
  // lowercase only: podman derives image names from layout paths and refuses capitals
  const dir = path.join(base, `vrun-${prefix}-${crypto.randomBytes(5).toString('hex')}`);
  fs.mkdirSync(dir, { mode: 0o755 });
  return dir;
}

export function cleanup(dir: string): void {
  try {
    execFileSync('sh', ['-c', `grep -F ' ${dir}' /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l`]);
  } catch {
    // nothing mounted
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

export interface TreeEntry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  sha?: string;
  link?: string;
  mtime?: number;
  rdev?: number;
  xattrs?: Record<string, string>;
  /** Index of the hardlink group (same inode) this entry belongs to, for files with nlink > 1. */
  group?: string;
}

/**
 * Describes a tree as the kernel shows it: type, mode bits, owner, content hash, symlink target, mtime of
 * non-directories, user xattrs and hardlink groups (named by their first member). Used to compare our rootfs
 * with umoci's file for file.
 */
export function describeTree(root: string): Record<string, TreeEntry> {
  const out: Record<string, TreeEntry> = {};
  const groups = new Map<string, string>();
  const walk = (rel: string) => {
    const abs = rel === '' ? root : path.join(root, rel);
    for (const name of fs.readdirSync(abs).sort()) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const p = path.join(root, r);
      const st = fs.lstatSync(p);
      const e: TreeEntry = { type: kind(st), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      if (st.isFile()) {
        e.size = st.size;
        e.sha = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
        if (st.nlink > 1) {
          const key = `${st.dev}:${st.ino}`;
          if (!groups.has(key)) groups.set(key, r);
          e.group = groups.get(key) as string;
        }
      }
      if (st.isSymbolicLink()) e.link = fs.readlinkSync(p);
      else e.mode = st.mode & 0o7777;
      if (st.isSymbolicLink()) e.mode = 0;
      if (!st.isDirectory()) e.mtime = Math.floor(st.mtimeMs / 1000);
      if (st.isCharacterDevice() || st.isBlockDevice()) e.rdev = st.rdev;
      if (!st.isSymbolicLink()) {
        const xs = fsOps()
          .fsLlistxattr(p)
          .filter((x) => x.startsWith('user.'))
          .sort();
        if (xs.length > 0) e.xattrs = Object.fromEntries(xs.map((x) => [x, fsOps().fsLgetxattr(p, x)?.toString('hex') ?? '']));
      }
      out[r] = e;
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

function kind(st: fs.Stats): string {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  return 'other';
}

/** Every path under `dir` (for "nothing was written outside the target" checks). */
export function listAll(dir: string): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    for (const name of fs.readdirSync(p)) {
      const full = path.join(p, name);
      out.push(full);
      if (fs.lstatSync(full).isDirectory()) walk(full);
    }
  };
  walk(dir);
  return out.sort();
}
