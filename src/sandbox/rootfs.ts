import { cp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VrunError } from '../common/errors.js';
import type { ImageRuntimeConfig } from './oci-spec.js';

/**
 * The container's root filesystem inside the sandbox's shared directory (which virtiofsd serves to the guest).
 * TEMPORARY: until the image store lands this builds the busybox rootfs itself.
 */
export interface PreparedRootfs {
  config: ImageRuntimeConfig;
  /** The rootfs on the host. */
  hostPath: string;
  /** The rootfs relative to the shared directory (the guest sees it under the share's mount). */
  guestRelPath: string;
  release(): Promise<void>;
}

export async function checkImage(image: string): Promise<void> {
  if (image !== 'busybox') throw new VrunError(`unable to find image "${image}" locally: pull or import it first (vrun pull ${image})`);
}

export async function prepareRootfs(image: string, _containerId: string, sharedDir: string): Promise<PreparedRootfs> {
  await checkImage(image);
  const root = path.join(sharedDir, 'rootfs');
  await mkdir(path.join(root, 'bin'), { recursive: true });
  await cp('/bin/busybox', path.join(root, 'bin/busybox'));
  for (const a of ['sh', 'echo', 'cat', 'ls', 'true', 'false', 'uname', 'id', 'pwd', 'sleep', 'env', 'head', 'dd', 'touch', 'hostname', 'yes']) {
    await symlink('busybox', path.join(root, 'bin', a)).catch(() => undefined);
  }
  for (const d of ['etc', 'tmp', 'proc', 'sys', 'dev', 'root']) await mkdir(path.join(root, d), { recursive: true });
  await writeFile(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  await writeFile(path.join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  return { config: { Cmd: ['sh'], Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'] }, hostPath: root, guestRelPath: 'rootfs', release: async () => rm(root, { recursive: true, force: true }) };
}
