import { guestText, type VmEnd } from '../backend.js';
import type { MachineEnd } from '../machine.js';

/**
 * The machine's end in the backends' common words. `guestStatus` is what the init printed before it ended: a
 * reboot or poweroff after it is the guest ending itself with that status, as under QEMU.
 */
export function nativeVmEnd(end: MachineEnd, guestStatus: number | undefined): VmEnd {
  const status = guestStatus !== undefined ? { guestStatus } : {};
  switch (end.kind) {
    case 'exit':
      return { kind: 'exit', message: `the guest ended with status ${end.status} (native VMM)`, guestStatus: end.status };
    case 'poweroff':
    case 'reboot':
      if (guestStatus !== undefined) return { kind: 'exit', message: `the guest ended with status ${guestStatus} (native VMM)`, guestStatus };
      return { kind: end.kind, message: end.kind === 'poweroff' ? 'the guest powered off (native VMM)' : 'the guest rebooted (native VMM)' };
    case 'panic':
      return { kind: 'panic', message: `guest kernel panic (native VMM): ${guestText(end.line)}`, ...status };
    case 'stopped':
      return { kind: 'killed', message: 'the native VMM was stopped', ...status };
    case 'error':
      return { kind: 'error', message: `the native VMM failed: ${end.message}`, ...status };
  }
}
