import { VrunError } from '../../common/errors.js';
import {
  BOOT_GDT_START,
  BOOT_IDT_START,
  BOOT_STACK_POINTER,
  CMDLINE_MAX_SIZE,
  CMDLINE_START,
  PD_START,
  PDPT_START,
  PML4_START,
  PVH_INFO_START,
  PVH_MEMMAP_MAX_ENTRIES,
  PVH_MEMMAP_START,
  PVH_MODLIST_START,
  ZERO_PAGE_START,
  e820Map,
  type E820Entry,
  type GuestRange,
} from '../layout.js';
import type { ElfKernel } from './elf.js';

/**
 * The two ways to enter a `vmlinux` directly, and the vCPU 0 state each needs.
 *
 * PVH is the default whenever the kernel carries the XEN_ELFNOTE_PHYS32_ENTRY note (as Firecracker
 * and QEMU microvm do): the kernel starts in flat 32-bit protected mode with EBX pointing at an
 * hvm_start_info, and builds its own GDT and page tables, so the host writes no page tables and the
 * entry state is a handful of registers. The Linux 64-bit boot protocol (zero page, identity-mapped
 * first GiB, long mode) remains for kernels built without CONFIG_PVH.
 *
 * Application processors need nothing from here: the in-kernel LAPIC parks them until the BSP sends
 * INIT/SIPI, and the kernel learns about them from the MP table.
 */

export type BootProtocol = 'pvh' | 'linux64';

/** A segment register as KVM's struct kvm_segment describes it. */
export interface SegmentState {
  base: number;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

export interface DescriptorTable {
  base: number;
  limit: number;
}

export interface BootCpuState {
  protocol: BootProtocol;
  regs: { rip: number; rsp: number; rbp: number; rsi: number; rbx: number; rflags: number };
  sregs: {
    cs: SegmentState;
    ds: SegmentState;
    es: SegmentState;
    fs: SegmentState;
    gs: SegmentState;
    ss: SegmentState;
    tr: SegmentState;
    gdt: DescriptorTable;
    idt: DescriptorTable;
    cr0: number;
    cr3: number;
    cr4: number;
    efer: number;
  };
  fpu: { fcw: number; mxcsr: number };
  msrs: { index: number; data: number }[];
}

const X86_CR0_PE = 0x1;
const X86_CR0_ET = 0x10;
const X86_CR0_PG = 0x8000_0000;
const X86_CR4_PAE = 0x20;
const EFER_LME = 0x100;
const EFER_LMA = 0x400;
const MSR_IA32_MISC_ENABLE = 0x1a0;
const MISC_ENABLE_FAST_STRING = 1;
const RFLAGS_RESERVED = 0x2;

const XEN_HVM_START_MAGIC = 0x336ec578;
const HVM_START_INFO_SIZE = 56;
const HVM_MODLIST_ENTRY_SIZE = 32;
const HVM_MEMMAP_ENTRY_SIZE = 24;

const BP_E820_ENTRIES = 0x1e8;
const BP_BOOT_FLAG = 0x1fe;
const BP_HEADER = 0x202;
const BP_TYPE_OF_LOADER = 0x210;
const BP_LOADFLAGS = 0x211;
const BP_RAMDISK_IMAGE = 0x218;
const BP_RAMDISK_SIZE = 0x21c;
const BP_CMD_LINE_PTR = 0x228;
const BP_KERNEL_ALIGNMENT = 0x230;
const BP_CMDLINE_SIZE = 0x238;
const BP_E820_TABLE = 0x2d0;
const BP_E820_MAX = 128;
const BOOT_PARAMS_SIZE = 0x1000;
const LOADED_HIGH = 0x1;
const KERNEL_ALIGNMENT = 0x100_0000;

/** GDT entry flags: 32-bit code, 64-bit code, data, TSS (busy), in the layout of the descriptor's bytes 5-6. */
const GDT_CODE32 = 0xc09b;
const GDT_CODE64 = 0xa09b;
const GDT_DATA = 0xc093;
const GDT_TSS32 = 0x008b;
const GDT_TSS64 = 0x808b;

export function gdtEntry(flags: number, base: number, limit: number): bigint {
  const b = BigInt(base >>> 0);
  const l = BigInt(limit >>> 0);
  const f = BigInt(flags);
  return (
    ((b & 0xff00_0000n) << 32n) |
    ((f & 0xf0ffn) << 40n) |
    ((l & 0x000f_0000n) << 32n) |
    ((b & 0x00ff_ffffn) << 16n) |
    (l & 0xffffn)
  );
}

/** Decodes a GDT entry into the KVM segment that a far load of `index * 8` would produce. */
export function segmentFromGdt(entry: bigint, index: number): SegmentState {
  const bit = (n: bigint): number => Number((entry >> n) & 1n);
  const base = Number(((entry >> 16n) & 0xff_ffffn) | ((entry >> 32n) & 0xff00_0000n));
  let limit = Number(((entry >> 32n) & 0xf_0000n) | (entry & 0xffffn));
  const g = bit(55n);
  if (g) limit = limit * 0x1000 + 0xfff;
  const present = bit(47n);
  return {
    base,
    limit,
    selector: index * 8,
    type: Number((entry >> 40n) & 0xfn),
    present,
    dpl: Number((entry >> 45n) & 3n),
    db: bit(54n),
    s: bit(44n),
    l: bit(53n),
    g,
    avl: bit(52n),
    unusable: present ? 0 : 1,
  };
}

export function chooseProtocol(kernel: ElfKernel, requested?: BootProtocol): BootProtocol {
  if (requested === 'pvh' && kernel.pvhEntry === undefined) {
    throw new VrunError(`guest kernel ${kernel.source} has no PVH entry note (built without CONFIG_PVH); use the linux64 boot protocol`);
  }
  return requested ?? (kernel.pvhEntry !== undefined ? 'pvh' : 'linux64');
}

export interface BootSetup {
  protocol: BootProtocol;
  kernel: ElfKernel;
  memBytes: number;
  /** NUL-terminated command line. */
  cmdline: Uint8Array;
  initrd?: { addr: number; size: number };
  /** A persistent-memory range for the memory map (layout.ts pmemRange). */
  pmem?: GuestRange;
}

function writeCmdline(ram: Uint8Array, cmdline: Uint8Array): void {
  if (cmdline.length === 0 || cmdline[cmdline.length - 1] !== 0) throw new VrunError('kernel command line must be NUL-terminated');
  if (cmdline.length > CMDLINE_MAX_SIZE) throw new VrunError(`kernel command line of ${cmdline.length} bytes exceeds ${CMDLINE_MAX_SIZE}`);
  ram.set(cmdline, CMDLINE_START);
}

function writeGdt(ram: Uint8Array, entries: bigint[]): void {
  const view = Buffer.from(ram.buffer, ram.byteOffset + BOOT_GDT_START, entries.length * 8);
  entries.forEach((e, i) => view.writeBigUInt64LE(e, i * 8));
  Buffer.from(ram.buffer, ram.byteOffset + BOOT_IDT_START, 8).fill(0);
}

function baseState(protocol: BootProtocol, gdt: bigint[]): BootCpuState {
  const code = segmentFromGdt(gdt[1]!, 1);
  const data = segmentFromGdt(gdt[2]!, 2);
  return {
    protocol,
    regs: { rip: 0, rsp: 0, rbp: 0, rsi: 0, rbx: 0, rflags: RFLAGS_RESERVED },
    sregs: {
      cs: code,
      ds: data,
      es: data,
      fs: data,
      gs: data,
      ss: data,
      tr: segmentFromGdt(gdt[3]!, 3),
      gdt: { base: BOOT_GDT_START, limit: gdt.length * 8 - 1 },
      idt: { base: BOOT_IDT_START, limit: 7 },
      cr0: X86_CR0_PE | X86_CR0_ET,
      cr3: 0,
      cr4: 0,
      efer: 0,
    },
    fpu: { fcw: 0x37f, mxcsr: 0x1f80 },
    msrs: [{ index: MSR_IA32_MISC_ENABLE, data: MISC_ENABLE_FAST_STRING }],
  };
}

/** Writes every boot structure into guest RAM (guest-physical 0 at index 0) and returns vCPU 0's state. */
export function writeBootStructures(ram: Uint8Array, setup: BootSetup): BootCpuState {
  writeCmdline(ram, setup.cmdline);
  const map = e820Map(setup.memBytes, setup.pmem);
  return setup.protocol === 'pvh' ? writePvh(ram, setup, map) : writeLinux64(ram, setup, map);
}

function writePvh(ram: Uint8Array, setup: BootSetup, map: E820Entry[]): BootCpuState {
  const entry = setup.kernel.pvhEntry;
  if (entry === undefined) throw new VrunError(`guest kernel ${setup.kernel.source} has no PVH entry note`);
  if (map.length > PVH_MEMMAP_MAX_ENTRIES) throw new VrunError(`memory map has ${map.length} entries, PVH allows ${PVH_MEMMAP_MAX_ENTRIES}`);
  const buf = Buffer.from(ram.buffer, ram.byteOffset, ram.byteLength);
  buf.fill(0, PVH_INFO_START, PVH_INFO_START + HVM_START_INFO_SIZE);
  buf.writeUInt32LE(XEN_HVM_START_MAGIC, PVH_INFO_START);
  buf.writeUInt32LE(1, PVH_INFO_START + 4); // version 1: memmap fields present
  if (setup.initrd) {
    buf.writeUInt32LE(1, PVH_INFO_START + 12);
    buf.writeBigUInt64LE(BigInt(PVH_MODLIST_START), PVH_INFO_START + 16);
    buf.fill(0, PVH_MODLIST_START, PVH_MODLIST_START + HVM_MODLIST_ENTRY_SIZE);
    buf.writeBigUInt64LE(BigInt(setup.initrd.addr), PVH_MODLIST_START);
    buf.writeBigUInt64LE(BigInt(setup.initrd.size), PVH_MODLIST_START + 8);
  }
  buf.writeBigUInt64LE(BigInt(CMDLINE_START), PVH_INFO_START + 24);
  buf.writeBigUInt64LE(BigInt(PVH_MEMMAP_START), PVH_INFO_START + 40);
  buf.writeUInt32LE(map.length, PVH_INFO_START + 48);
  map.forEach((e, i) => {
    const o = PVH_MEMMAP_START + i * HVM_MEMMAP_ENTRY_SIZE;
    buf.writeBigUInt64LE(BigInt(e.addr), o);
    buf.writeBigUInt64LE(BigInt(e.size), o + 8);
    buf.writeUInt32LE(e.type, o + 16);
    buf.writeUInt32LE(0, o + 20);
  });

  const gdt = [0n, gdtEntry(GDT_CODE32, 0, 0xffff_ffff), gdtEntry(GDT_DATA, 0, 0xffff_ffff), gdtEntry(GDT_TSS32, 0, 0x67)];
  writeGdt(ram, gdt);
  const state = baseState('pvh', gdt);
  state.regs.rip = entry;
  state.regs.rbx = PVH_INFO_START;
  return state;
}

function writeLinux64(ram: Uint8Array, setup: BootSetup, map: E820Entry[]): BootCpuState {
  if (map.length > BP_E820_MAX) throw new VrunError(`memory map has ${map.length} entries, the zero page holds ${BP_E820_MAX}`);
  const buf = Buffer.from(ram.buffer, ram.byteOffset, ram.byteLength);
  const zp = ZERO_PAGE_START;
  buf.fill(0, zp, zp + BOOT_PARAMS_SIZE);
  buf.writeUInt16LE(0xaa55, zp + BP_BOOT_FLAG);
  buf.writeUInt32LE(0x5372_6448, zp + BP_HEADER); // "HdrS"
  buf[zp + BP_TYPE_OF_LOADER] = 0xff; // undefined loader
  buf[zp + BP_LOADFLAGS] = LOADED_HIGH;
  buf.writeUInt32LE(CMDLINE_START, zp + BP_CMD_LINE_PTR);
  buf.writeUInt32LE(setup.cmdline.length - 1, zp + BP_CMDLINE_SIZE);
  buf.writeUInt32LE(KERNEL_ALIGNMENT, zp + BP_KERNEL_ALIGNMENT);
  if (setup.initrd) {
    buf.writeUInt32LE(setup.initrd.addr, zp + BP_RAMDISK_IMAGE);
    buf.writeUInt32LE(setup.initrd.size, zp + BP_RAMDISK_SIZE);
  }
  buf[zp + BP_E820_ENTRIES] = map.length;
  map.forEach((e, i) => {
    const o = zp + BP_E820_TABLE + i * 20;
    buf.writeBigUInt64LE(BigInt(e.addr), o);
    buf.writeBigUInt64LE(BigInt(e.size), o + 8);
    buf.writeUInt32LE(e.type, o + 16);
  });

  // Identity map of the first GiB with 2 MiB pages: enough for startup_64 to reach its own tables.
  buf.fill(0, PML4_START, PD_START + 0x1000);
  buf.writeBigUInt64LE(BigInt(PDPT_START | 0x3), PML4_START);
  buf.writeBigUInt64LE(BigInt(PD_START | 0x3), PDPT_START);
  for (let i = 0; i < 512; i++) buf.writeBigUInt64LE((BigInt(i) << 21n) | 0x83n, PD_START + i * 8);

  const gdt = [0n, gdtEntry(GDT_CODE64, 0, 0xfffff), gdtEntry(GDT_DATA, 0, 0xfffff), gdtEntry(GDT_TSS64, 0, 0xfffff)];
  writeGdt(ram, gdt);
  const state = baseState('linux64', gdt);
  state.regs.rip = setup.kernel.entry64;
  state.regs.rsp = BOOT_STACK_POINTER;
  state.regs.rbp = BOOT_STACK_POINTER;
  state.regs.rsi = ZERO_PAGE_START;
  state.sregs.cr0 = (X86_CR0_PE | X86_CR0_ET | X86_CR0_PG) >>> 0;
  state.sregs.cr3 = PML4_START;
  state.sregs.cr4 = X86_CR4_PAE;
  state.sregs.efer = EFER_LME | EFER_LMA;
  return state;
}
