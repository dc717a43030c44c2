import { USERLAND_PMEM_PARAM } from '../../guest-image/guest-contract.js';

/**
 * The shared userland as persistent memory (issue 19). QEMU maps the userland image read-only inside the
 * guest's memory map, as the middle one of three NUMA nodes' memory backends (RAM, the image, RAM again); the
 * guest kernel is told by `memmap=SIZE!START` that this range is (legacy, e820) persistent memory, and the
 * guest init mounts /dev/pmem0 with DAX. Node, crun and the agent
 * then run from pages of the host's page cache, one copy for every pod, and the guest keeps no page cache of
 * them: what a virtio-blk disk could not avoid (each guest caching what it read, ~56 MiB per pod).
 *
 * Safety: the backend is `readonly=on`, so QEMU maps the file PROT_READ and the region is a ROM to the guest
 * (TCG discards guest writes, KVM turns them into exits); vhost-user leaves ROM out of the memory table it
 * gives virtiofsd, so no device can be made to write into it either.
 */

/** microvm keeps guest RAM below 4 GiB up to 3 GiB and splits the rest above 4 GiB (hw/i386/microvm.c). */
export const MICROVM_LOW_RAM_MIB = 3072;
/** Linux maps persistent memory in 2 MiB subsections: the region must start and end on one. */
export const PMEM_ALIGN_MIB = 2;
/**
 * Guest RAM above the image. QEMU loads the initrd at the top of low memory, which must be RAM: a ROM there
 * would silently drop it. The split form's boot initrd is ~2 MiB.
 */
export const TOP_RAM_MIB = 32;

export interface UserlandPmem {
  /** The image file, mapped whole; its size is a multiple of PMEM_ALIGN_MIB (the image builder pads it). */
  path: string;
  sizeMiB: number;
}

/** Guest RAM is split around the image: lowMiB below it, TOP_RAM_MIB above; the image starts at lowMiB. */
export type PmemPlacement = { ok: true; lowMiB: number; sizeMiB: number; topMiB: number; cmdline: string } | { ok: false; reason: string };

/**
 * Where the userland's range goes in guest-physical memory: TOP_RAM_MIB below the end of guest RAM, all of it
 * below microvm's 3 GiB split and on 2 MiB boundaries. A refusal says why, for the log line of the fallback.
 */
export function placeUserlandPmem(memoryMiB: number, imageBytes: number): PmemPlacement {
  const align = PMEM_ALIGN_MIB * 2 ** 20;
  if (!Number.isSafeInteger(imageBytes) || imageBytes <= 0 || imageBytes % align !== 0) {
    return { ok: false, reason: `the userland image is ${imageBytes} bytes, not a whole number of ${PMEM_ALIGN_MIB} MiB blocks (built by an older vrun: rebuild the guest image)` };
  }
  if (memoryMiB % PMEM_ALIGN_MIB !== 0) return { ok: false, reason: `guest RAM (${memoryMiB} MiB) does not end on a ${PMEM_ALIGN_MIB} MiB boundary` };
  if (memoryMiB < 2 * TOP_RAM_MIB) return { ok: false, reason: `guest RAM (${memoryMiB} MiB) is too small to split around the userland` };
  const sizeMiB = imageBytes / 2 ** 20;
  if (memoryMiB + sizeMiB > MICROVM_LOW_RAM_MIB) {
    return { ok: false, reason: `guest RAM (${memoryMiB} MiB) plus the userland (${sizeMiB} MiB) goes past microvm's ${MICROVM_LOW_RAM_MIB} MiB of low memory` };
  }
  const lowMiB = memoryMiB - TOP_RAM_MIB;
  return { ok: true, lowMiB, sizeMiB, topMiB: TOP_RAM_MIB, cmdline: `memmap=${sizeMiB}M!${lowMiB}M ${USERLAND_PMEM_PARAM}` };
}
