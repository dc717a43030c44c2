import { existsSync, readFileSync } from 'node:fs';

/**
 * What this host offers a VMM. A /dev/kvm is not enough to boot Linux: nested under another hypervisor
 * without VT-x/AMD-V (PVM, like the development hosts), KVM runs small payloads but no Linux guest.
 */

/** True when the CPU advertises VT-x or AMD-V, i.e. /dev/kvm can run a real Linux guest directly. */
export function hasHardwareVirtualization(cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')): boolean {
  return /^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo);
}

export function hasKvmDevice(devicePath = '/dev/kvm'): boolean {
  return existsSync(devicePath);
}

/** Whether a guest kernel can run on KVM here: /dev/kvm with hardware virtualization under it. */
export function linuxKvmUsable(): boolean {
  return hasKvmDevice() && hasHardwareVirtualization();
}
