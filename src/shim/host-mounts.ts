import path from 'node:path';
import { errorMessage } from '../common/errors.js';
import type { GuestShare } from '../sandbox/guest-share.js';
import type { Mount } from './protocol/types.js';
import { Code, TtrpcError } from '../ttrpc/status.js';

/**
 * A container's host-side mounts in the pod's share (see GuestShare: the guest can write inside these mounts,
 * never around them): the rootfs containerd's snapshotter prepared, and the host sources of bind mounts. They
 * are made before the guest is told about the path, so the guest never caches the empty directory underneath.
 */
function isBind(m: Mount): boolean {
  return m.type === 'bind' || m.type === 'rbind' || m.options.includes('bind') || m.options.includes('rbind');
}

async function asTtrpc<T>(code: Code, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new TtrpcError(code, errorMessage(err));
  }
}

/** Mounts containerd's rootfs mounts (or the bundle's own rootfs when there are none) at `<id>/rootfs`. */
export async function mountRootfs(share: GuestShare, id: string, mounts: Mount[], bundleRootfs: string): Promise<void> {
  const rel = `${id}/rootfs`;
  if (mounts.length === 0) {
    await asTtrpc(Code.FAILED_PRECONDITION, () => share.bind(bundleRootfs, rel, { readonly: false }, 'the bundle rootfs'));
    return;
  }
  if (mounts.length > 1) throw new TtrpcError(Code.INVALID_ARGUMENT, `vrun takes one rootfs mount, containerd sent ${mounts.length}`);
  const m = mounts[0] as Mount;
  if (isBind(m)) {
    await asTtrpc(Code.FAILED_PRECONDITION, () => share.bind(m.source, rel, { readonly: m.options.includes('ro') }, 'the rootfs'));
    return;
  }
  // mountFs keeps the filesystem's options and puts its guest-data flags over containerd's own.
  await asTtrpc(Code.FAILED_PRECONDITION, () => share.mountFs(rel, m.type, m.source, m.options, `the rootfs (${m.type})`));
}

/** A bind mount's host source at `<id>/mounts/<index>`, read-only when asked. */
export async function bindMount(share: GuestShare, id: string, index: number, source: string, readonly: boolean): Promise<void> {
  if (!path.isAbsolute(source)) throw new TtrpcError(Code.INVALID_ARGUMENT, `bind mount source ${source} is not absolute`);
  await asTtrpc(Code.INVALID_ARGUMENT, () => share.bind(source, `${id}/mounts/${index}`, { readonly }));
}
