import type { SegmentState, DescriptorTable } from '../boot/params.js';

/**
 * KVM's register structs as Buffers (the addon passes them raw). Offsets follow <linux/kvm.h> for
 * x86-64: struct kvm_regs is 18 u64 in the order below; struct kvm_sregs is 8 segments of 24 bytes,
 * two descriptor tables of 16, then the control registers.
 */

export const REGS_SIZE = 144;
export const SREGS_SIZE = 312;
export const FPU_SIZE = 416;
export const FPU_FCW_OFFSET = 128;
export const FPU_MXCSR_OFFSET = 408;
export const CPUID_ENTRY_SIZE = 40;
export const MSR_ENTRY_SIZE = 16;

const REG_NAMES = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags'] as const;
export type RegName = (typeof REG_NAMES)[number];
export type Regs = Record<RegName, bigint>;

export function decodeRegs(buf: Buffer): Regs {
  const out = {} as Regs;
  REG_NAMES.forEach((n, i) => (out[n] = buf.readBigUInt64LE(8 * i)));
  return out;
}

export function encodeRegs(buf: Buffer, regs: Partial<Record<RegName, bigint | number>>): Buffer {
  REG_NAMES.forEach((n, i) => {
    const v = regs[n];
    if (v !== undefined) buf.writeBigUInt64LE(BigInt(v), 8 * i);
  });
  return buf;
}

const SEGMENTS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
export type SegmentName = (typeof SEGMENTS)[number];
export const SEG_SIZE = 24;
export const GDT_OFF = 192;
const IDT_OFF = 208;
export const CR_OFF = { cr0: 224, cr2: 232, cr3: 240, cr4: 248, cr8: 256, efer: 264, apic_base: 272 } as const;
export type ControlReg = keyof typeof CR_OFF;

export function readSegment(buf: Buffer, name: SegmentName): SegmentState {
  const o = SEG_SIZE * SEGMENTS.indexOf(name);
  return {
    base: Number(buf.readBigUInt64LE(o)),
    limit: buf.readUInt32LE(o + 8),
    selector: buf.readUInt16LE(o + 12),
    type: buf[o + 14]!,
    present: buf[o + 15]!,
    dpl: buf[o + 16]!,
    db: buf[o + 17]!,
    s: buf[o + 18]!,
    l: buf[o + 19]!,
    g: buf[o + 20]!,
    avl: buf[o + 21]!,
    unusable: buf[o + 22]!,
  };
}

export function writeSegment(buf: Buffer, name: SegmentName, s: SegmentState): void {
  const o = SEG_SIZE * SEGMENTS.indexOf(name);
  buf.writeBigUInt64LE(BigInt(s.base), o);
  buf.writeUInt32LE(s.limit >>> 0, o + 8);
  buf.writeUInt16LE(s.selector, o + 12);
  [s.type, s.present, s.dpl, s.db, s.s, s.l, s.g, s.avl, s.unusable, 0].forEach((v, i) => (buf[o + 14 + i] = v));
}

export function writeTable(buf: Buffer, which: 'gdt' | 'idt', t: DescriptorTable): void {
  const o = which === 'gdt' ? GDT_OFF : IDT_OFF;
  buf.writeBigUInt64LE(BigInt(t.base), o);
  buf.writeUInt16LE(t.limit, o + 8);
}

export function readControl(buf: Buffer, reg: ControlReg): bigint {
  return buf.readBigUInt64LE(CR_OFF[reg]);
}

export function writeControl(buf: Buffer, reg: ControlReg, value: bigint | number): void {
  buf.writeBigUInt64LE(BigInt(value), CR_OFF[reg]);
}

/** MSR list for KVM_SET_MSRS: 16-byte entries (index, reserved, data). */
export function encodeMsrs(msrs: readonly { index: number; data: number | bigint }[]): Buffer {
  const buf = Buffer.alloc(MSR_ENTRY_SIZE * msrs.length);
  msrs.forEach((m, i) => {
    buf.writeUInt32LE(m.index >>> 0, MSR_ENTRY_SIZE * i);
    buf.writeBigUInt64LE(BigInt(m.data), MSR_ENTRY_SIZE * i + 8);
  });
  return buf;
}
