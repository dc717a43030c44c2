/**
 * How much memory a pod's guest gets (issue 19). With a limit, the guest gets the limit plus what the guest
 * itself holds besides the containers: measured idle under QEMU (bench/results/density.md) the kernel, its
 * page tables and the struct pages for guest RAM take ~20 MiB, kernel slab ~14 MiB and the agent's heap ~16 MiB,
 * about 50 MiB (node, crun and the libraries run from the shared userland mapped with DAX, so the guest keeps
 * no page cache of them; served from a disk instead, where the userland's range does not fit, they add ~55 MiB
 * of page cache); the rest is room for crun, exec sessions and the agent's growth. The container's own cgroup
 * in the guest enforces the limit, so the overhead is never the container's to use. Without a limit the guest
 * gets the default. Guest memory the guest never touches, or touched and freed (free page reporting), costs the
 * host nothing, so the size is a ceiling, not a reservation; a RuntimeClass declares GUEST_OVERHEAD_MIB plus
 * the VMM's own memory as overhead.podFixed (docs/containerd.md).
 */
export const GUEST_OVERHEAD_MIB = 160;
export const DEFAULT_GUEST_MEMORY_MIB = 512;
/** Below this the agent (node) and crun have too little room to start containers reliably. */
export const MIN_GUEST_MEMORY_MIB = 256;

export function guestMemoryMiB(limitBytes: number | undefined): number {
  if (limitBytes === undefined || limitBytes <= 0) return DEFAULT_GUEST_MEMORY_MIB;
  // Even: the shared userland is mapped right after guest RAM, on a 2 MiB boundary (src/vmm/qemu/userland-pmem.ts).
  const mib = Math.ceil(limitBytes / 2 ** 21) * 2 + GUEST_OVERHEAD_MIB;
  return Math.max(MIN_GUEST_MEMORY_MIB, mib);
}
