import { loadNative } from '../common/native.js';
import { VrunError, errorMessage } from '../common/errors.js';

/** A regular file fsWriteNewFiles creates: data, then owner (when given), mode, xattrs and mtime, through its fd. */
export interface NewFile {
  path: string;
  data: Buffer[];
  /** Permission bits, 0o7777 at most. */
  mode: number;
  /** [uid, gid], or null to keep the creator's. */
  owner: [number, number] | null;
  mtimeSec: number;
  mtimeNsec: number;
  xattrs: [string, Buffer][];
}

/**
 * The slice of the native addon the image store uses: calls Node has no binding for. mknod makes overlayfs
 * whiteouts (character device 0:0) and fifos; xattrs carry overlay opaque markers and file capabilities from
 * layer tars; flock gives locks the kernel releases when a command is killed; fsWriteNewFiles creates a layer's
 * small files in batches off the main thread.
 */
interface FsOpsNative {
  fsMknod(path: string, mode: number, major: number, minor: number): void;
  fsLsetxattr(path: string, name: string, value: Buffer): void;
  fsLgetxattr(path: string, name: string): Buffer | null;
  fsLlistxattr(path: string): string[];
  fsFlock(fd: number, exclusive: boolean, wait: boolean): boolean;
  fsFunlock(fd: number): void;
  /** Creates the files in order on the thread pool; rejects with a node:fs-shaped error for the first that fails. */
  fsWriteNewFiles(files: NewFile[]): Promise<void>;
}

let cached: FsOpsNative | undefined;

export function fsOps(): FsOpsNative {
  if (!cached) {
    let mod: Partial<FsOpsNative>;
    try {
      mod = loadNative<Partial<FsOpsNative>>();
    } catch (err) {
      throw new VrunError(`the image store needs the native addon: ${errorMessage(err)}`);
    }
    if (typeof mod.fsFlock !== 'function' || typeof mod.fsMknod !== 'function' || typeof mod.fsLsetxattr !== 'function' || typeof mod.fsWriteNewFiles !== 'function') {
      throw new VrunError('the native addon is older than this vrun (it lacks fsFlock/fsMknod/fsWriteNewFiles): rebuild it with "npx node-gyp rebuild --directory native"');
    }
    cached = mod as FsOpsNative;
  }
  return cached;
}
