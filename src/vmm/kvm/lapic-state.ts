/**
 * KVM_GET_LAPIC's register page: the one edit the VMM makes at setup, and a reader's view of it and the timer MSRs, for the hang diagnosis: a guest whose
 * vCPUs all sit in HLT with interrupts on is waiting for something, and the local APIC says whether that is a
 * timer that was armed and never delivered (pending in IRR, or a TSC deadline already in the past) or nothing
 * the APIC knows of (a device interrupt the VMM never raised). Offsets per the Intel SDM, vol. 3, table 11-1.
 */

const APIC_TPR = 0x80;
const APIC_PPR = 0xa0;
const APIC_SVR = 0xf0;
const APIC_ISR = 0x100;
const APIC_IRR = 0x200;
const APIC_LVTT = 0x320;
const APIC_TMICT = 0x380;
const APIC_TMCCT = 0x390;
const APIC_TDCR = 0x3e0;
const APIC_LVT0 = 0x350;
const APIC_LVT1 = 0x360;
const APIC_DM_MASK = 0x700;
const APIC_DM_EXTINT = 0x700;
const APIC_DM_NMI = 0x400;
const SVR_ENABLED = 1 << 8;
const LVT_MASKED = 1 << 16;
const TIMER_MODES = ['one-shot', 'periodic', 'tsc-deadline', 'reserved'] as const;

export const MSR_IA32_TSC = 0x10;
export const MSR_IA32_TSC_DEADLINE = 0x6e0;

/** LINT0 delivers the PIC's ExtINT and LINT1 NMIs, as the MP table tells the kernel (Firecracker does the same). */
export function setLintDelivery(regs: Buffer): void {
  regs.writeUInt32LE((regs.readUInt32LE(APIC_LVT0) & ~APIC_DM_MASK) | APIC_DM_EXTINT, APIC_LVT0);
  regs.writeUInt32LE((regs.readUInt32LE(APIC_LVT1) & ~APIC_DM_MASK) | APIC_DM_NMI, APIC_LVT1);
}

export interface LapicSummary {
  enabled: boolean;
  tpr: number;
  ppr: number;
  /** Vectors requested and not yet taken (IRR), and those being serviced (ISR). */
  irr: number[];
  isr: number[];
  timer: { vector: number; masked: boolean; mode: (typeof TIMER_MODES)[number]; initialCount: number; currentCount: number; divide: number };
}

/** The vectors set in one of the APIC's 256-bit registers (eight 32-bit words, 16 bytes apart). */
function vectors(regs: Buffer, base: number): number[] {
  const out: number[] = [];
  for (let w = 0; w < 8; w++) {
    const bits = regs.readUInt32LE(base + 16 * w);
    for (let b = 0; b < 32; b++) if (bits & (1 << b)) out.push(32 * w + b);
  }
  return out;
}

export function summarizeLapic(regs: Buffer): LapicSummary {
  if (regs.length < 0x400) throw new Error(`local APIC state is ${regs.length} bytes, not 1024`);
  const lvtt = regs.readUInt32LE(APIC_LVTT);
  return {
    enabled: (regs.readUInt32LE(APIC_SVR) & SVR_ENABLED) !== 0,
    tpr: regs.readUInt32LE(APIC_TPR) & 0xff,
    ppr: regs.readUInt32LE(APIC_PPR) & 0xff,
    irr: vectors(regs, APIC_IRR),
    isr: vectors(regs, APIC_ISR),
    timer: {
      vector: lvtt & 0xff,
      masked: (lvtt & LVT_MASKED) !== 0,
      mode: TIMER_MODES[(lvtt >>> 17) & 3] ?? 'reserved',
      initialCount: regs.readUInt32LE(APIC_TMICT),
      currentCount: regs.readUInt32LE(APIC_TMCCT),
      divide: regs.readUInt32LE(APIC_TDCR),
    },
  };
}

/**
 * The TSC-deadline timer as the guest armed it. KVM zeroes the MSR when the timer fires, so a deadline in the past
 * is a timer interrupt KVM has not delivered yet; `msLate` says for how long (null: disarmed, or no TSC rate).
 */
export interface DeadlineState {
  tsc: string;
  deadline: string;
  msLate: number | null;
}

export function deadlineState(tsc: bigint, deadline: bigint, tscKhz: number): DeadlineState {
  const late = deadline === 0n || tscKhz <= 0 ? null : Number(tsc - deadline) / tscKhz;
  return { tsc: tsc.toString(), deadline: deadline.toString(), msLate: late === null ? null : Math.round(late) };
}
