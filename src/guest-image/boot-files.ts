import { VrunError } from '../common/errors.js';
import type { GuestImage } from './image.js';

/**
 * Which initrd a pod boots, and the userland disk beside it (issue 19). QEMU boots the split form: a small
 * initrd, and node, crun, the agent and their libraries from one read-only disk image that all pods' VMMs
 * read through the host's page cache, instead of a ~95 MiB initrd that each QEMU keeps a copy of and each
 * guest unpacks into its own memory. The native VMM has no virtio-blk, so it boots the full initrd, and so
 * does QEMU with an image built before the split form existed. VRUN_GUEST_USERLAND=initrd|disk overrides the
 * choice (disk only where the VMM has it).
 */
export interface BootFiles {
  initrd: string;
  userlandImage?: string;
}

export type UserlandMode = 'initrd' | 'disk';

function wantedMode(backend: 'native' | 'qemu', image: GuestImage): UserlandMode {
  const env = process.env.VRUN_GUEST_USERLAND;
  if (env === undefined || env === '') return backend === 'qemu' && image.userland ? 'disk' : 'initrd';
  if (env !== 'initrd' && env !== 'disk') throw new VrunError(`VRUN_GUEST_USERLAND=${env}: expected "initrd" or "disk"`, { kind: 'invalid' });
  if (env === 'disk' && backend !== 'qemu') throw new VrunError('VRUN_GUEST_USERLAND=disk: only the QEMU backend has a disk to serve the userland from', { kind: 'invalid' });
  return env;
}

export function bootFiles(image: GuestImage, backend: 'native' | 'qemu'): BootFiles {
  const mode = wantedMode(backend, image);
  if (mode === 'initrd') return { initrd: image.initrd };
  if (!image.userland) throw new VrunError('the guest image has no split userland (built before it existed)', { kind: 'precondition', hint: 'run "npm run guest-image" to rebuild it' });
  return { initrd: image.userland.initrd, userlandImage: image.userland.image };
}
