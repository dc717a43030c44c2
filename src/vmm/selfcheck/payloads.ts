import type { Vm } from '../kvm/vm.js';
import { readSegment, writeControl, writeSegment, writeTable, type SegmentName } from '../kvm/vcpu-state.js';

/**
 * Scaffolding for hand-assembled guest payloads (the self-check and the exit benchmark): CPU state
 * for real mode and for 64-bit long mode (identity-mapped page tables, a flat GDT), and a tiny
 * byte assembler.
 */

export const PAYLOAD_ENTRY = 0x1000;

/** Real mode with CS = DS = ES = SS = 0, execution at PAYLOAD_ENTRY. */
export function enterRealMode(vm: Vm, vcpu = 0): void {
  vm.editSregs(vcpu, (s) => {
    for (const name of ['cs', 'ds', 'es', 'ss', 'fs', 'gs'] as SegmentName[]) {
      writeSegment(s, name, { ...readSegment(s, name), base: 0, selector: 0 });
    }
  });
  vm.setRegs(vcpu, { rip: PAYLOAD_ENTRY, rflags: 2, rsp: 0x8000 });
}

const PML4 = 0x9000;
const PDPT = 0xa000;
const PD_LOW = 0xb000;
const PD_GAP = 0xc000;
const GDT = 0x500;

/**
 * 64-bit mode: the first GiB and 3..4 GiB (where MMIO lives) identity-mapped with 2 MiB pages, a GDT
 * with a 64-bit code and a data segment, paging and long mode on. Needs 0x500..0xcfff in guest RAM.
 */
export function enterLongMode(vm: Vm, vcpu = 0): void {
  const ram = vm.ram;
  ram.writeBigUInt64LE(BigInt(PDPT | 3), PML4);
  ram.writeBigUInt64LE(BigInt(PD_LOW | 3), PDPT);
  ram.writeBigUInt64LE(BigInt(PD_GAP | 3), PDPT + 3 * 8);
  for (let i = 0; i < 512; i++) {
    ram.writeBigUInt64LE((BigInt(i) * 0x20_0000n) | 0x83n, PD_LOW + 8 * i);
    ram.writeBigUInt64LE(((3n << 30n) + BigInt(i) * 0x20_0000n) | 0x83n, PD_GAP + 8 * i);
  }
  ram.writeBigUInt64LE(0n, GDT);
  ram.writeBigUInt64LE(0x00af_9b00_0000_ffffn, GDT + 8);
  ram.writeBigUInt64LE(0x00cf_9300_0000_ffffn, GDT + 16);
  // KVM refuses EFER.LME/LMA in KVM_SET_SREGS ("Invalid argument") unless the vCPU's CPUID has long mode, as
  // Debian's 6.12 does (kvm_valid_efer in its sregs check; its 6.1 did not look): give it what KVM supports.
  vm.setState(vcpu, 'cpuid', vm.supportedCpuid());
  vm.editSregs(vcpu, (s) => {
    const code = { base: 0, limit: 0xffff_ffff, selector: 8, type: 11, present: 1, dpl: 0, db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0 };
    const data = { ...code, selector: 16, type: 3, db: 1, l: 0 };
    writeSegment(s, 'cs', code);
    for (const name of ['ds', 'es', 'ss', 'fs', 'gs'] as SegmentName[]) writeSegment(s, name, data);
    writeSegment(s, 'tr', { base: 0, limit: 0x67, selector: 0, type: 11, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 });
    writeTable(s, 'gdt', { base: GDT, limit: 23 });
    writeControl(s, 'cr3', PML4);
    writeControl(s, 'cr4', 0x20); // PAE
    writeControl(s, 'cr0', 0x8000_0011); // PG | ET | PE
    writeControl(s, 'efer', 0x500); // LME | LMA
  });
  vm.setRegs(vcpu, { rip: PAYLOAD_ENTRY, rflags: 2, rsp: 0x8000 });
}

/** 32-bit protected mode with flat 4 GiB segments (what a multiboot loader hands over), paging off. */
export function enterProtectedMode(vm: Vm, entry: number, vcpu = 0): void {
  vm.ram.writeBigUInt64LE(0n, GDT);
  vm.ram.writeBigUInt64LE(0x00cf_9b00_0000_ffffn, GDT + 8);
  vm.ram.writeBigUInt64LE(0x00cf_9300_0000_ffffn, GDT + 16);
  vm.editSregs(vcpu, (s) => {
    const code = { base: 0, limit: 0xffff_ffff, selector: 8, type: 11, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0 };
    writeSegment(s, 'cs', code);
    for (const name of ['ds', 'es', 'ss', 'fs', 'gs'] as SegmentName[]) writeSegment(s, name, { ...code, selector: 16, type: 3 });
    writeTable(s, 'gdt', { base: GDT, limit: 23 });
    writeControl(s, 'cr0', 0x11); // ET | PE
  });
  vm.setRegs(vcpu, { rip: entry, rflags: 2, rsp: 0x8000 });
}

/** Concatenates instruction bytes placed at PAYLOAD_ENTRY; `here` is the guest address of the next byte. */
export class Code {
  private readonly bytes: number[] = [];
  emit(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  get here(): number {
    return PAYLOAD_ENTRY + this.bytes.length;
  }
  patch16(at: number, value: number): void {
    this.bytes[at - PAYLOAD_ENTRY] = value & 0xff;
    this.bytes[at - PAYLOAD_ENTRY + 1] = (value >> 8) & 0xff;
  }
  load(vm: Vm): void {
    Buffer.from(this.bytes).copy(vm.ram, PAYLOAD_ENTRY);
  }
}
