import type { DeadlineState } from './lapic-state.js';

/** One vCPU as Machine.diagnose() reports it (the fields this check reads). */
export interface DiagnosedVcpu {
  vcpu: number;
  mpState?: unknown;
  interruptsOn?: boolean;
  tscDeadline?: DeadlineState;
  /**
   * Its thread: inside KVM_RUN when the diagnosis began, and still inside it `kickedMsAgo` after the kick that
   * pause() sends (a signal, which makes KVM_RUN return EINTR at once).
   */
  thread?: { inKvmRun: boolean; kvmRuns?: number; stillInKvmRun?: boolean; kickedMsAgo?: number };
}

/** How late a deadline may be before it counts as lost: far above any scheduling delay of a loaded nested host. */
export const LOST_TIMER_GRACE_MS = 5000;

/**
 * A vCPU the host's KVM holds and does not give back, if the diagnosis shows one; null otherwise.
 * - A timer interrupt KVM held back: a vCPU halted with interrupts on, its thread inside KVM_RUN, its TSC
 *   deadline passed more than `graceMs` ago. With the in-kernel irqchip the local APIC timer is KVM's alone
 *   (armed by the guest's MSR write, fired by a host hrtimer, injected on entry): no code of this VMM runs between
 *   the deadline and the interrupt.
 * - A vCPU thread that stays inside KVM_RUN after its kick: KVM returns to a pending signal, whatever the guest
 *   does, so a thread still inside is stuck in the host kernel.
 * The KVM lab's nested KVM (L1 on L0's TCG) shows both now and then; the lab tests name them when they retry.
 */
export function stuckInKvm(vcpus: readonly DiagnosedVcpu[], graceMs = LOST_TIMER_GRACE_MS): string | null {
  for (const v of vcpus) {
    const t = v.thread;
    if (t?.inKvmRun && t.stillInKvmRun) return `vCPU ${v.vcpu}'s thread did not leave KVM_RUN within ${t.kickedMsAgo ?? '?'} ms of its kick`;
    const late = v.tscDeadline?.msLate;
    if (v.mpState === 'halted' && v.interruptsOn === true && t?.inKvmRun === true && late !== null && late !== undefined && late > graceMs) {
      return `vCPU ${v.vcpu} halted with interrupts on inside KVM_RUN, its TSC-deadline timer ${late} ms overdue`;
    }
  }
  return null;
}
