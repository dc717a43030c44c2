import { loadNative } from '../common/native.js';

/**
 * mount(2) and umount2(2) for the host side of a pod (native/src/fs_ops.cc, on libuv's thread pool): a pod's
 * share takes about ten mount calls, and a mount(8) process for each cost ~80 ms of every pod start.
 */
export type MountFlag = 'bind' | 'remount' | 'rdonly' | 'nosuid' | 'nodev' | 'noexec' | 'rec' | 'move' | 'private' | 'shared' | 'slave';

interface MountNative {
  fsMount(source: string, target: string, fstype: string, flags: MountFlag[], data: string): Promise<void>;
  fsUmount(target: string, detach: boolean): Promise<void>;
}

/** '' passes NULL for source, fstype and data; rejects with a node:fs-shaped error (code, syscall, path). */
export function mount(source: string, target: string, fstype: string, flags: MountFlag[], data = ''): Promise<void> {
  return loadNative<MountNative>().fsMount(source, target, fstype, flags, data);
}

/** A lazy (MNT_DETACH) or plain unmount; never follows a symlink in the last component. */
export function umount(target: string, opts: { detach: boolean }): Promise<void> {
  return loadNative<MountNative>().fsUmount(target, opts.detach);
}
