import { describe, expect, it } from 'vitest';
import { loadNative } from '../../src/common/native.js';
import { decodeCpuid, encodeCpuid } from '../../src/vmm/machine.js';
import {
  CPUID_ENTRY_SIZE,
  CR_OFF,
  decodeRegs,
  encodeMsrs,
  encodeRegs,
  FPU_FCW_OFFSET,
  FPU_MXCSR_OFFSET,
  FPU_SIZE,
  GDT_OFF,
  MSR_ENTRY_SIZE,
  readControl,
  readSegment,
  REGS_SIZE,
  SEG_SIZE,
  SREGS_SIZE,
  writeControl,
  writeSegment,
} from '../../src/vmm/kvm/vcpu-state.js';

/**
 * The TS encoders of KVM's register structs against the sizes and offsets the C++ addon was compiled
 * with (<linux/kvm.h> on this host): a layout mistake shows here, on any host, instead of as a guest
 * that does not start.
 */
describe('KVM struct layouts', () => {
  const sizes = loadNative<{ kvmStructSizes(): Record<string, number> }>().kvmStructSizes();

  it('match <linux/kvm.h>', () => {
    expect(sizes).toEqual({
      regs: REGS_SIZE,
      sregs: SREGS_SIZE,
      fpu: FPU_SIZE,
      lapic: 1024,
      cpuidEntry: CPUID_ENTRY_SIZE,
      msrEntry: MSR_ENTRY_SIZE,
      segment: SEG_SIZE,
      sregsCr0: CR_OFF.cr0,
      sregsGdt: GDT_OFF,
      sregsEfer: CR_OFF.efer,
      fpuMxcsr: FPU_MXCSR_OFFSET,
      fpuFcw: FPU_FCW_OFFSET,
    });
  });

  it('round-trips registers, segments, control registers, MSRs and CPUID entries', () => {
    const regs = encodeRegs(Buffer.alloc(REGS_SIZE), { rip: 0x1000, rsp: 0x8ff0n, rflags: 2, r15: 0xffff_ffff_ffff_fff0n });
    expect(decodeRegs(regs)).toMatchObject({ rip: 0x1000n, rsp: 0x8ff0n, rflags: 2n, r15: 0xffff_ffff_ffff_fff0n, rax: 0n });
    const sregs = Buffer.alloc(SREGS_SIZE);
    const cs = { base: 0x1234_5000, limit: 0xffff_ffff, selector: 8, type: 11, present: 1, dpl: 0, db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0 };
    writeSegment(sregs, 'cs', cs);
    writeSegment(sregs, 'tr', { ...cs, selector: 0x18, s: 0 });
    writeControl(sregs, 'efer', 0x500);
    expect(readSegment(sregs, 'cs')).toEqual(cs);
    expect(readSegment(sregs, 'tr').selector).toBe(0x18);
    expect(readSegment(sregs, 'ds').selector).toBe(0);
    expect(readControl(sregs, 'efer')).toBe(0x500n);
    const msrs = encodeMsrs([{ index: 0x1a0, data: 1 }, { index: 0xc000_0080, data: 0x500n }]);
    expect(msrs.length).toBe(2 * MSR_ENTRY_SIZE);
    expect(msrs.readUInt32LE(MSR_ENTRY_SIZE)).toBe(0xc000_0080);
    const entries = [{ function: 0x4000_0001, index: 0, flags: 0, eax: 0xffff_ffff, ebx: 1, ecx: 2, edx: 3 }];
    expect(decodeCpuid(encodeCpuid(entries))).toEqual(entries);
  });
});
