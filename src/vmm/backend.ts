import { VrunError } from '../common/errors.js';
import type { ConsoleLog } from './console-log.js';
import { hasHardwareVirtualization, hasKvmDevice } from './host-capabilities.js';
import { kvmAddon } from './kvm/native.js';

/**
 * The boundary between a VM's user (the sandbox) and the VMM running it. Both backends, QEMU
 * (src/vmm/qemu/backend.ts) and the native VMM (src/vmm/native-backend.ts), boot the same guest image with the
 * same devices: a serial console, the `vrun.agent` console port surfaced as a host unix socket, and
 * vhost-user-fs shares; and both report the VM's end in the same words (VmEnd).
 */
export type VmmChoice = 'auto' | 'native' | 'qemu' | 'qemu-kvm' | 'qemu-tcg';

export interface VmLaunch {
  kernel: string;
  initrd: string;
  cmdline: string;
  vcpus: number;
  memoryMiB: number;
  /**
   * A root-owned directory, made by the caller, holding agentSocket and every share's socketPath and nothing
   * else: the jailed QEMU gets it read-write (it is chowned to the pod's jail uid).
   */
  runDir: string;
  agentSocket: string;
  shares: { tag: string; socketPath: string }[];
  consoleLog: string;
}

/**
 * How a VM ended, whichever VMM ran it:
 * - exit: the guest ended its VM itself after saying with what status (the init's `VRUN-EXIT status=N` line,
 *   or the native VMM's exit port);
 * - poweroff / reboot: the guest powered off or rebooted without saying why;
 * - panic: the guest kernel panicked;
 * - killed: the host ended the VM (QEMU killed by a signal, the native VMM stopped);
 * - error: the VMM failed (QEMU exited with an error, a vCPU or device model failed).
 */
export type VmEndKind = 'exit' | 'poweroff' | 'reboot' | 'panic' | 'killed' | 'error';

export interface VmEnd {
  kind: VmEndKind;
  /**
   * One printable line for people (logs, state.json, `ps`), in the backend's words. Parts of it can come from
   * the guest (a panic line), which is why it is sanitized and bounded.
   */
  message: string;
  /** The status the guest's init reported before the end, if it did; always set for 'exit'. */
  guestStatus?: number;
  /** The VMM process's exit code, for a VMM that is a process of its own (QEMU). */
  code?: number;
  /** The signal that killed the VMM process. */
  signal?: NodeJS.Signals;
}

/** Guest-controlled text quoted in a VmEnd message. */
const MAX_GUEST_TEXT = 200;

/** Guest text (a panic line) made printable and short, for a message that reaches state.json and terminals. */
export function guestText(line: string): string {
  return line.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_GUEST_TEXT);
}

export interface RunningVm {
  backend: string;
  /**
   * The process running the VM: QEMU's jailer (killing it kills QEMU), or the sandbox's own for the native VMM
   * (it runs in-process).
   */
  pid: number | undefined;
  /** The VMM process itself where that differs from `pid` (QEMU under its jailer), once it runs. */
  vmmPid?(): number | undefined;
  console: ConsoleLog;
  /** Resolves once the VM is gone and everything the backend held for it is released. */
  exited: Promise<VmEnd>;
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
  const kvmDev = hasKvmDevice();
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
