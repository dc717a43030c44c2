import { existsSync } from 'node:fs';
import { VrunError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { hasHardwareVirtualization } from '../kvm-lab/placement.js';
import type { ConsoleLog } from '../vmm/console-log.js';
import { kvmAddon } from '../vmm/kvm/native.js';
import { QemuVm } from '../vmm/qemu/machine.js';

/**
 * The VMM behind a sandbox. Both backends boot the same guest image with the same devices: a serial
 * console, the `vrun.agent` console port surfaced as a host unix socket, and vhost-user-fs shares.
 */
export type VmmChoice = 'auto' | 'native' | 'qemu' | 'qemu-kvm' | 'qemu-tcg';

export interface VmLaunch {
  kernel: string;
  initrd: string;
  cmdline: string;
  vcpus: number;
  memoryMiB: number;
  agentSocket: string;
  shares: { tag: string; socketPath: string }[];
  consoleLog: string;
  qmpSocket: string;
}

export interface VmExit {
  reason: 'reboot' | 'killed' | 'error';
  guestStatus?: number;
  panic: boolean;
  detail: string;
}

export interface RunningVm {
  backend: string;
  /** The process running the VM: QEMU's, or the sandbox's own for the native VMM (it runs in-process). */
  pid: number | undefined;
  console: ConsoleLog;
  exited: Promise<VmExit>;
  kill(): Promise<void>;
  /** The VMM's view of a guest that stopped making progress (vCPUs, devices), where the backend can give one. */
  diagnose?(): Promise<Record<string, unknown>>;
}

export interface BackendDecision {
  backend: 'native' | 'qemu';
  accel: 'kvm' | 'tcg';
  /** Said once to the user when the choice costs them something (emulation). */
  notice?: string;
}

/**
 * auto: the native VMM where hardware virtualization is usable; else QEMU with KVM; else QEMU with TCG.
 * A /dev/kvm without VT-x/AMD-V underneath (nested PVM, like these hosts) runs small payloads but cannot
 * boot Linux, so it counts as absent for guests.
 */
export function decideBackend(choice: VmmChoice, opts: { nativeAvailable: boolean | (() => boolean) }): BackendDecision {
  const kvmDev = existsSync('/dev/kvm');
  const hw = hasHardwareVirtualization();
  const linuxKvm = kvmDev && hw;
  const nativeAvailable = () => (typeof opts.nativeAvailable === 'function' ? opts.nativeAvailable() : opts.nativeAvailable);
  const emulationNotice = kvmDev
    ? 'this host has /dev/kvm but no hardware virtualization (VT-x/AMD-V) under it, so it cannot boot a Linux guest: the VM runs under QEMU emulation (TCG), slower but with the same isolation'
    : 'this host has no /dev/kvm: the VM runs under QEMU emulation (TCG), slower but with the same isolation';
  switch (choice) {
    case 'native':
      if (!nativeAvailable()) throw new VrunError('--vmm native: the native VMM is not available in this build (its C++ addon in native/ is not built or does not load)');
      if (!linuxKvm) throw new VrunError(`--vmm native needs hardware virtualization: ${emulationNotice.split(':')[0]}`);
      return { backend: 'native', accel: 'kvm' };
    case 'qemu-kvm':
      if (!linuxKvm) throw new VrunError(`--vmm qemu-kvm needs hardware virtualization: ${emulationNotice.split(':')[0]}`);
      return { backend: 'qemu', accel: 'kvm' };
    case 'qemu-tcg':
      return { backend: 'qemu', accel: 'tcg' };
    case 'qemu':
      return linuxKvm ? { backend: 'qemu', accel: 'kvm' } : { backend: 'qemu', accel: 'tcg', notice: emulationNotice };
    case 'auto':
      if (linuxKvm && nativeAvailable()) return { backend: 'native', accel: 'kvm' };
      return linuxKvm ? { backend: 'qemu', accel: 'kvm' } : { backend: 'qemu', accel: 'tcg', notice: emulationNotice };
  }
}

let addonLoads: boolean | undefined;

/**
 * Whether this build can run the native VMM: its C++ addon is built and loads with the KVM entry points.
 * Whether /dev/kvm can boot Linux is decideBackend's own check (hardware virtualization under it).
 */
export function nativeVmmAvailable(): boolean {
  if (addonLoads === undefined) {
    try {
      const addon = kvmAddon();
      addonLoads = typeof addon.KvmVm === 'function' && typeof addon.kvmApiVersion === 'function';
    } catch {
      addonLoads = false;
    }
  }
  return addonLoads;
}

/** decideBackend with the native VMM counted when it is built; the addon is only loaded when KVM could use it. */
export function chooseBackend(choice: VmmChoice): BackendDecision {
  return decideBackend(choice, { nativeAvailable: nativeVmmAvailable });
}

export function parseVmmChoice(value: string | undefined): VmmChoice {
  const v = value ?? 'auto';
  if (v === 'auto' || v === 'native' || v === 'qemu' || v === 'qemu-kvm' || v === 'qemu-tcg') return v;
  throw new VrunError(`invalid --vmm "${v}": expected auto, native, qemu, qemu-kvm or qemu-tcg`);
}

export function launchQemu(decision: BackendDecision, spec: VmLaunch, logger?: Logger): RunningVm {
  const vm = QemuVm.start(
    {
      kernel: spec.kernel,
      initrd: spec.initrd,
      cmdline: spec.cmdline,
      vcpus: spec.vcpus,
      memoryMiB: spec.memoryMiB,
      accel: decision.accel,
      ports: [{ name: 'vrun.agent', socketPath: spec.agentSocket }],
      shares: spec.shares,
      qmpSocket: spec.qmpSocket,
    },
    { consoleLog: spec.consoleLog, logger },
  );
  return {
    backend: `qemu-${decision.accel}`,
    pid: vm.pid,
    console: vm.console,
    exited: vm.exited.then((e) => ({
      reason: e.reason,
      guestStatus: e.guestStatus,
      panic: e.panic,
      detail: e.signal ? `QEMU killed by ${e.signal}` : `QEMU exited with code ${e.code}`,
    })),
    kill: async () => {
      await vm.kill();
    },
  };
}
