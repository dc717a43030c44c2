import path from 'node:path';
import { VrunError } from '../common/errors.js';
import { BUILTIN_BUSYBOX, ensureBuiltinImages } from '../image/builtin.js';
import { openImageStore } from '../image/image-store.js';
import type { IdMap } from '../vmm/jail/idmap.js';
import type { ImageRuntimeConfig } from './oci-spec.js';

/**
 * The container's root filesystem, made by the image store at a mount point in the sandbox's share (see
 * GuestShare): an overlay of the image's layers with a private upper layer in the store.
 */
export interface PreparedRootfs {
  config: ImageRuntimeConfig;
  /** The rootfs on the host. */
  hostPath: string;
  /** The rootfs relative to the share (the guest sees it under the share's mount). */
  guestRelPath: string;
  release(): Promise<void>;
}

function isBuiltin(image: string): boolean {
  return image === 'busybox' || image === BUILTIN_BUSYBOX || image === `docker.io/library/${BUILTIN_BUSYBOX}`;
}

/** Fails with one clear line for an image the store does not have; the built-in busybox is made on demand. */
export async function checkImage(image: string): Promise<void> {
  const store = openImageStore();
  if (store.find(image)) return;
  if (isBuiltin(image)) {
    await ensureBuiltinImages(store);
    return;
  }
  throw new VrunError(`unable to find image "${image}" locally: pull or import it first (vrun pull ${image})`, { kind: 'not-found' });
}

/** `target` is the share's `rootfs` mount point (on the host side); `idmap` the share's mapping. */
export async function prepareRootfs(image: string, containerId: string, target: string, idmap?: IdMap): Promise<PreparedRootfs> {
  const store = openImageStore();
  const prepared = await store.prepareRootfs(containerId, image, target, { idmap });
  const rt = prepared.image.runtime;
  return {
    config: { Entrypoint: rt.Entrypoint, Cmd: rt.Cmd, Env: rt.Env, WorkingDir: rt.WorkingDir, User: rt.User },
    hostPath: prepared.path,
    guestRelPath: path.basename(target),
    release: () => store.releaseRootfs(containerId),
  };
}

/** For `rm -f` of a sandbox whose process died: forget its rootfs in the store (a no-op if there is none). */
export async function releaseRootfsOf(containerId: string): Promise<void> {
  await openImageStore().releaseRootfs(containerId);
}
