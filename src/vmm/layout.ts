import { VrunError } from '../common/errors.js';

/**
 * The guest-physical memory map of a vrun machine. Everything the host writes before the first
 * instruction (boot structures, command line, MP table, kernel, initrd) has a fixed home here, so
 * the boot code and the tests share one source of truth. The low layout follows the PC conventions
 * Linux expects (MP table in the last KiB of base memory, RAM from 1 MiB) and Firecracker's choices
 * for the rest.
 *
 *   0x0000_0500  GDT (boot)             0x0000_0520  IDT (empty, boot)
 *   0x0000_6000  PVH hvm_start_info     0x0000_6040  PVH module list (initrd)
 *   0x0000_7000  zero page (64-bit protocol) or PVH memory map
 *   0x0000_8ff0  boot stack top         0x0000_9000  PML4, 0xa000 PDPT, 0xb000 PD (64-bit protocol)
 *   0x0002_0000  kernel command line    0x0009_fc00  MP floating pointer + config table (reserved)
 *   0x0010_0000  high memory: kernel at its ELF physical address, initrd as high as possible
 *   0xd000_0000  32-bit MMIO gap: virtio-mmio devices, IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000
 *   0x1_0000_0000 RAM above the gap when the guest has more than 3.25 GiB
 *   above RAM, from 4 GiB on a 128 MiB boundary: the read-only userland image as persistent memory (e820 type 12)
 */

export const PAGE_SIZE = 0x1000;

export const BOOT_GDT_START = 0x500;
export const BOOT_IDT_START = 0x520;
export const PVH_INFO_START = 0x6000;
export const PVH_MODLIST_START = 0x6040;
export const ZERO_PAGE_START = 0x7000;
/** Only one of the two boot protocols is used per boot, so the PVH memory map shares the zero page's slot. */
export const PVH_MEMMAP_START = 0x7000;
export const PVH_MEMMAP_MAX_ENTRIES = 128;
export const BOOT_STACK_POINTER = 0x8ff0;
export const PML4_START = 0x9000;
export const PDPT_START = 0xa000;
export const PD_START = 0xb000;
export const CMDLINE_START = 0x20000;
/** x86 COMMAND_LINE_SIZE is 2048 including the terminating NUL. */
export const CMDLINE_MAX_SIZE = 2048;
/** Linux scans the last KiB of 640 KiB base memory for the MP floating pointer. */
export const MPTABLE_START = 0x9fc00;
export const EBDA_END = 0xa0000;
export const HIMEM_START = 0x100000;

export const MMIO_GAP_START = 0xd000_0000;
export const MMIO_GAP_END = 0x1_0000_0000;
export const IOAPIC_ADDR = 0xfec0_0000;
export const LAPIC_ADDR = 0xfee0_0000;

export const VIRTIO_MMIO_BASE = MMIO_GAP_START;
export const VIRTIO_MMIO_SIZE = 0x1000;
/** IRQ 4 is the UART, 1 and 12 the i8042; virtio devices take 5..23 (the IOAPIC has 24 pins). */
export const VIRTIO_IRQ_BASE = 5;
export const IOAPIC_PINS = 24;
export const MAX_VIRTIO_DEVICES = IOAPIC_PINS - VIRTIO_IRQ_BASE;

export const SERIAL_IRQ = 4;

/** Headroom the kernel needs beyond its image and the initrd before it can unpack anything. */
export const MIN_FREE_RAM = 32 * 1024 * 1024;

export const E820_RAM = 1;
export const E820_RESERVED = 2;
/** Legacy persistent memory (what `memmap=N!S` makes): Linux's nd_e820 turns the range into /dev/pmemN. */
export const E820_PRAM = 12;
/** A memory section of x86-64 Linux: ranges it hot-adds (pmem's struct pages) start on one, so nothing is shared. */
export const PMEM_ALIGN = 128 * 1024 * 1024;

export interface E820Entry {
  addr: number;
  size: number;
  type: number;
}

/** A stretch of guest RAM: where the guest sees it and where it sits in the host's RAM file. */
export interface RamRegion {
  guestAddr: number;
  size: number;
  fileOffset: number;
}

export function assertMemorySize(memBytes: number): void {
  if (!Number.isSafeInteger(memBytes) || memBytes <= 0 || memBytes % PAGE_SIZE !== 0) {
    throw new VrunError(`guest memory size ${memBytes} is not a positive multiple of ${PAGE_SIZE} bytes`);
  }
  if (memBytes <= HIMEM_START) throw new VrunError(`guest memory of ${memBytes} bytes is below the 1 MiB every guest needs`);
}

/** RAM below the MMIO gap, and above 4 GiB whatever does not fit under it. */
export function ramRegions(memBytes: number): RamRegion[] {
  assertMemorySize(memBytes);
  const low = Math.min(memBytes, MMIO_GAP_START);
  const regions: RamRegion[] = [{ guestAddr: 0, size: low, fileOffset: 0 }];
  if (memBytes > low) regions.push({ guestAddr: MMIO_GAP_END, size: memBytes - low, fileOffset: low });
  return regions;
}

/** The end of RAM below 4 GiB: every boot structure, the kernel and the initrd must sit under it. */
export function lowRamEnd(memBytes: number): number {
  return Math.min(memBytes, MMIO_GAP_START);
}

/** A range of guest-physical memory outside RAM: a persistent-memory range, or a read-only mapping behind one. */
export interface GuestRange {
  addr: number;
  size: number;
}

/** Where a persistent-memory range of `size` bytes goes: above all of RAM and 4 GiB, on a section boundary. */
export function pmemRange(memBytes: number, size: number): GuestRange {
  if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) throw new VrunError(`persistent memory of ${size} bytes is not a positive multiple of ${PAGE_SIZE} bytes`);
  const regions = ramRegions(memBytes);
  const last = regions[regions.length - 1]!;
  return { addr: alignUp(Math.max(MMIO_GAP_END, last.guestAddr + last.size), PMEM_ALIGN), size };
}

/** The map handed to the kernel, sorted by address and without overlaps; `pmem` from pmemRange(). */
export function e820Map(memBytes: number, pmem?: GuestRange): E820Entry[] {
  const regions = ramRegions(memBytes);
  const low = regions[0]!.size;
  const map: E820Entry[] = [
    { addr: 0, size: MPTABLE_START, type: E820_RAM },
    { addr: MPTABLE_START, size: EBDA_END - MPTABLE_START, type: E820_RESERVED },
    { addr: HIMEM_START, size: low - HIMEM_START, type: E820_RAM },
  ];
  const high = regions[1];
  if (high) map.push({ addr: high.guestAddr, size: high.size, type: E820_RAM });
  if (pmem) map.push({ addr: pmem.addr, size: pmem.size, type: E820_PRAM });
  return map;
}

export interface VirtioMmioSlot {
  index: number;
  addr: number;
  size: number;
  irq: number;
}

export function virtioMmioSlot(index: number): VirtioMmioSlot {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_VIRTIO_DEVICES) {
    throw new VrunError(`virtio-mmio slot ${index} is out of range: at most ${MAX_VIRTIO_DEVICES} devices fit the IOAPIC`);
  }
  return { index, addr: VIRTIO_MMIO_BASE + index * VIRTIO_MMIO_SIZE, size: VIRTIO_MMIO_SIZE, irq: VIRTIO_IRQ_BASE + index };
}

export function alignDown(value: number, align: number): number {
  return value - (value % align);
}

export function alignUp(value: number, align: number): number {
  const rem = value % align;
  return rem === 0 ? value : value + (align - rem);
}

/**
 * The initrd goes as high as possible below the MMIO gap (or the end of RAM), page aligned, so the
 * kernel's own early allocations above its image have the most room; it must not reach down into
 * the kernel image.
 */
export function initrdPlacement(memBytes: number, kernelEnd: number, initrdSize: number, maxAddr = MMIO_GAP_START): number {
  if (!Number.isSafeInteger(initrdSize) || initrdSize <= 0) throw new VrunError(`initrd size ${initrdSize} is not a positive size`);
  const top = Math.min(lowRamEnd(memBytes), maxAddr);
  const start = alignDown(top - initrdSize, PAGE_SIZE);
  const needed = alignUp(kernelEnd, PAGE_SIZE) + alignUp(initrdSize, PAGE_SIZE) + MIN_FREE_RAM;
  if (start < alignUp(kernelEnd, PAGE_SIZE) || needed > top) {
    throw new VrunError(
      `guest memory of ${Math.floor(memBytes / 1048576)} MiB is too small for the kernel (ends at ${hex(kernelEnd)}) ` +
        `and an initrd of ${initrdSize} bytes: give the guest at least ${Math.ceil(needed / 1048576)} MiB`,
    );
  }
  return start;
}

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
