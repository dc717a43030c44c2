import { VrunError } from '../common/errors.js';
import type { GuestImage } from './image.js';

/**
 * Which initrd a pod boots, and how the userland beside it reaches the guest (issue 19). QEMU boots the split
 * form: a small initrd, and node, crun, the agent and their libraries from one read-only image that all pods'
 * VMMs read through the host's page cache, instead of a ~95 MiB initrd that each QEMU keeps a copy of and each
 * guest unpacks into its own memory. By default the image is mapped as persistent memory with DAX (no page
 * cache of it in the guest either, src/vmm/qemu/userland-pmem.ts, and the native VMM's read-only memory slot,
 * src/vmm/machine.ts); `disk` serves it over virtio-blk (QEMU only: the native VMM has no virtio-blk). An
 * image built before the split form existed boots the full initrd. VRUN_GUEST_USERLAND=initrd|disk|pmem
 * overrides the choice.
 */
export type UserlandAttach = 'disk' | 'pmem';

export interface BootFiles {
  initrd: string;
  userland?: { image: string; attach: UserlandAttach };
}

export type UserlandMode = 'initrd' | UserlandAttach;
const MODES: readonly UserlandMode[] = ['initrd', 'disk', 'pmem'];

function wantedMode(backend: 'native' | 'qemu', image: GuestImage): UserlandMode {
  const env = process.env.VRUN_GUEST_USERLAND;
  if (env === undefined || env === '') return image.userland ? 'pmem' : 'initrd';
  const mode = MODES.find((m) => m === env);
  if (mode === undefined) throw new VrunError(`VRUN_GUEST_USERLAND=${env}: expected "initrd", "disk" or "pmem"`, { kind: 'invalid' });
  if (mode === 'disk' && backend !== 'qemu') throw new VrunError('VRUN_GUEST_USERLAND=disk: only the QEMU backend has a virtio-blk disk to serve the userland on', { kind: 'invalid' });
  return mode;
}

export function bootFiles(image: GuestImage, backend: 'native' | 'qemu'): BootFiles {
  const mode = wantedMode(backend, image);
  if (mode === 'initrd') return { initrd: image.initrd };
  if (!image.userland) throw new VrunError('the guest image has no split userland (built before it existed)', { kind: 'precondition', hint: 'run "npm run guest-image" to rebuild it' });
  return { initrd: image.userland.initrd, userland: { image: image.userland.image, attach: mode } };
}
