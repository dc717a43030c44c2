import type { Vm } from '../kvm/vm.js';

/**
 * The PC ports Linux touches at boot that have no device behind them in a vrun guest, and where
 * each is handled:
 *
 * - in the kernel (KVM_CREATE_IRQCHIP / KVM_CREATE_PIT2): PIC 0x20-0x21 and 0xa0-0xa1, ELCR
 *   0x4d0-0x4d1, PIT 0x40-0x43, the speaker/PIT-gate port 0x61; these never exit to user space;
 * - avoided by the command line: 0x80 (io_delay=none), COM2-4 probes (8250.nr_uarts=1), PCI config
 *   0xcf8/0xcfc (pci=off);
 * - answered by the vCPU threads themselves, without an exit to JS (there is no device model to run):
 *   0x80 (POST/delay, in case io_delay is overridden), CMOS/RTC 0x70-0x71 (reads all-ones, "no RTC":
 *   KVM guests take wall-clock time from kvmclock);
 * - everything else that hits no device reads as all-ones through the bus and is logged at a
 *   bounded rate.
 */

export const SILENT_PORTS: readonly { base: number; size: number; name: string }[] = [
  { base: 0x70, size: 2, name: 'cmos (absent)' },
  { base: 0x80, size: 1, name: 'post/delay' },
];

export function attachSilentPorts(vm: Pick<Vm, 'answerPortsNatively'>): void {
  for (const p of SILENT_PORTS) vm.answerPortsNatively(p.base, p.size, 0xffff_ffff, p.name);
}
