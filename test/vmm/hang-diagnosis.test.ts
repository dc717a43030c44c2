import { describe, expect, it } from 'vitest';
import { deadlineState, summarizeLapic } from '../../src/vmm/kvm/lapic-state.js';
import { stuckInKvm, type DiagnosedVcpu } from '../../src/vmm/kvm/stuck-in-kvm.js';

/** A KVM_GET_LAPIC page with the given 32-bit registers set. */
function lapicPage(regs: Record<number, number>): Buffer {
  const b = Buffer.alloc(1024);
  for (const [off, v] of Object.entries(regs)) b.writeUInt32LE(v >>> 0, Number(off));
  return b;
}

describe('local APIC summary', () => {
  it('reads the TSC-deadline timer, the priorities and the pending and in-service vectors', () => {
    // LVTT: vector 0xec, TSC-deadline mode (bits 17-18 = 2), unmasked; IRR bits for 33 and 236; ISR bit for 253.
    const s = summarizeLapic(lapicPage({ 0xf0: 0x1ff, 0x80: 0x10, 0xa0: 0x20, 0x320: (2 << 17) | 0xec, 0x210: 1 << 1, 0x270: 1 << 12, 0x170: 1 << 29 }));
    expect(s).toEqual({ enabled: true, tpr: 0x10, ppr: 0x20, irr: [33, 236], isr: [253], timer: { vector: 236, masked: false, mode: 'tsc-deadline', initialCount: 0, currentCount: 0, divide: 0 } });
  });

  it('reads a masked one-shot timer with its counts, and a software-disabled APIC', () => {
    const s = summarizeLapic(lapicPage({ 0xf0: 0xff, 0x320: (1 << 16) | 0xef, 0x380: 5000, 0x390: 1234, 0x3e0: 0xb }));
    expect(s.enabled).toBe(false);
    expect(s.timer).toEqual({ vector: 0xef, masked: true, mode: 'one-shot', initialCount: 5000, currentCount: 1234, divide: 0xb });
    expect(s.irr).toEqual([]);
  });

  it('refuses a register page of the wrong size', () => {
    expect(() => summarizeLapic(Buffer.alloc(512))).toThrow(/512 bytes, not 1024/);
  });
});

describe('TSC deadline', () => {
  it('turns ticks past the deadline into milliseconds at the vCPU TSC rate', () => {
    expect(deadlineState(3_000_000_000n, 1_000_000_000n, 2_000_000)).toEqual({ tsc: '3000000000', deadline: '1000000000', msLate: 1000 });
    expect(deadlineState(1_000_000_000n, 3_000_000_000n, 2_000_000).msLate).toBe(-1000);
  });

  it('has no lateness for a disarmed timer or an unknown rate', () => {
    expect(deadlineState(5n, 0n, 2_000_000).msLate).toBeNull();
    expect(deadlineState(5n, 1n, 0).msLate).toBeNull();
  });
});

describe('vCPU stuck in KVM verdict', () => {
  const halted = (msLate: number | null, over: Partial<DiagnosedVcpu> = {}): DiagnosedVcpu => ({
    vcpu: 1,
    mpState: 'halted',
    interruptsOn: true,
    tscDeadline: { tsc: '0', deadline: '1', msLate },
    thread: { inKvmRun: true },
    ...over,
  });

  it('names a halted vCPU whose deadline passed long ago while KVM held it', () => {
    expect(stuckInKvm([{ vcpu: 0, mpState: 'runnable' }, halted(240_000)])).toBe('vCPU 1 halted with interrupts on inside KVM_RUN, its TSC-deadline timer 240000 ms overdue');
  });

  it('does not blame KVM for a deadline within the grace, a disarmed timer, or a deadline still ahead', () => {
    expect(stuckInKvm([halted(4000), halted(null), halted(-20)])).toBeNull();
  });

  it('names a vCPU thread that stayed inside KVM_RUN after its kick, whatever the guest state', () => {
    expect(stuckInKvm([{ vcpu: 0, thread: { inKvmRun: true, stillInKvmRun: true, kickedMsAgo: 2010 } }])).toBe("vCPU 0's thread did not leave KVM_RUN within 2010 ms of its kick");
    // Outside KVM_RUN when the diagnosis began (held up in this process): not KVM's doing.
    expect(stuckInKvm([{ vcpu: 0, thread: { inKvmRun: false, stillInKvmRun: true, kickedMsAgo: 2010 } }])).toBeNull();
    expect(stuckInKvm([{ vcpu: 0, thread: { inKvmRun: true, stillInKvmRun: false, kickedMsAgo: 60 } }])).toBeNull();
  });

  it('does not blame KVM when the vCPU was not in its hands', () => {
    expect(stuckInKvm([halted(60_000, { thread: { inKvmRun: false } })])).toBeNull();
    expect(stuckInKvm([halted(60_000, { interruptsOn: false })])).toBeNull();
    expect(stuckInKvm([halted(60_000, { mpState: 'runnable' })])).toBeNull();
    expect(stuckInKvm([halted(60_000, { thread: undefined })])).toBeNull();
  });
});
