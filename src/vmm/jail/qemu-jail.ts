import type { Logger } from '../../common/log.js';
import type { Accel } from '../qemu/command.js';
import { prepareVmmJail, type VmmJail } from './vmm-jail.js';

export { canonicalPath, makeEmptyRoot, topLevelUsrLinks } from './vmm-jail.js';

/**
 * The jail of one QEMU (src/vmm/jail/vmm-jail.ts does the work): QEMU's memory overhead and threads.
 */

/**
 * QEMU's own memory besides guest RAM, charged to its memory cgroup: heap and device state, the TCG
 * translated-code cache (capped with -accel tcg,tb-size=TCG_TB_MIB; QEMU's default lets it reach 1 GiB), and
 * page cache it faults first (its libraries, the kernel and the ~95 MiB initrd it reads into guest RAM).
 * Measured (QEMU 7.2 TCG, 2 vCPUs, 512 MiB guest, node in the guest filling 380 MiB and running JIT code):
 * cgroup peak 604 MiB with 502 MiB of guest RAM touched, i.e. ~100 MiB of QEMU's own (RssAnon 97 MiB); the
 * worst case adds the rest of the code cache and the initrd's page cache (~155 MiB). 384 leaves margin, and
 * page cache is reclaimed before the limit OOM-kills anything.
 */
export const TCG_TB_MIB = 64;
export const VMM_OVERHEAD_MIB = 384;

/**
 * QEMU's threads: main loop, RCU, one per vCPU (4 in all measured for 2 vCPUs, booted and under load), plus
 * its worker pool (up to 64, used by 9p and block I/O, which production pods do not have) and spare.
 */
export function pidsMax(vcpus: number): number {
  return 96 + vcpus;
}

export interface QemuJailOptions {
  /** Root-owned directory holding the sockets QEMU listens on and connects to; handed to the jail's id. */
  runDir: string;
  /** Files QEMU only reads (kernel, initrd). */
  files: string[];
  /** Sockets QEMU connects to (virtiofsd's); those outside runDir are bound one by one. */
  sockets: string[];
  accel: Accel;
  memoryMiB: number;
  vcpus: number;
  /**
   * The pod's network namespace, which QEMU then runs in instead of a new empty one, and the taps in it the
   * jailer opens for QEMU (QEMU gets fd `fd`; see JailSpec.taps).
   */
  net?: { netns: string; taps: { fd: number; name: string }[] };
  /** Defaults to `<runDir>.jail`, made here and removed at teardown. */
  root?: string;
  logger?: Logger;
}

export type QemuJail = VmmJail;

export function prepareQemuJail(o: QemuJailOptions): QemuJail {
  const { accel, ...rest } = o;
  return prepareVmmJail({ ...rest, kvm: accel === 'kvm', overheadMiB: VMM_OVERHEAD_MIB, pidsMax: pidsMax(o.vcpus) });
}
