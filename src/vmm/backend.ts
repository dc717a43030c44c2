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
  /**
   * A read-only image with the guest's userland, for an initrd that mounts it, and how the VMM attaches it
   * (src/guest-image/boot-files.ts): a virtio-blk disk, or persistent memory the guest maps with DAX.
   */
  userland?: { image: string; attach: 'disk' | 'pmem' };
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
  /**
   * The pod's NICs, one guest virtio-net device each (eth0, eth1, ... in this order), made by
   * src/network/tap.ts next to the interface CNI made. All in one network namespace, which the VMM runs in.
   */
  nets?: VmNet[];
}

export interface VmNet {
  /** The pod's network namespace, e.g. /run/netns/vrun-<sandbox id>. */
  netns: string;
  /** A persistent tap (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR) in that namespace. */
  tap: string;
  /** The guest NIC's MAC: the CNI interface's, so the bridge and the neighbours keep knowing it. */
  mac: string;
  /** The CNI interface's MTU, which the guest NIC is given too. */
  mtu: number;
}

/** One microvm has few virtio-mmio slots, and each NIC is one more fd into the VMM. */
export const MAX_VM_NETS = 8;
/** Linux's smallest IPv4 MTU and virtio-net's largest (the config field is 16 bits). */
export const VM_NET_MTU = { min: 68, max: 65535 } as const;
/** What a kernel accepts as an interface name, narrowed to plain characters (as src/network does). */
const IFNAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/**
 * Checks `nets` before anything is started, and returns their one network namespace (undefined for none). Each
 * value ends up in a VMM argument (QEMU's option syntax splits on commas), so anything outside the plain forms
 * is refused rather than escaped.
 */
export function checkVmNets(nets: VmNet[] | undefined): string | undefined {
  if (!nets || nets.length === 0) return undefined;
  const bad = (why: string) => new VrunError(`invalid VM network: ${why}`, { kind: 'invalid' });
  if (nets.length > MAX_VM_NETS) throw bad(`${nets.length} NICs, at most ${MAX_VM_NETS}`);
  const netns = nets[0]?.netns ?? '';
  if (!netns.startsWith('/') || /[\s,]/.test(netns) || netns.split('/').some((p) => p === '..' || p === '.')) {
    throw bad(`network namespace ${JSON.stringify(netns)} is not a plain absolute path`);
  }
  const taps = new Set<string>();
  const macs = new Set<string>();
  for (const n of nets) {
    // One VMM process is in one network namespace: NICs in two would need two processes.
    if (n.netns !== netns) throw bad(`NICs in two network namespaces (${netns}, ${n.netns}): all of a VM's NICs must be in one`);
    if (typeof n.tap !== 'string' || !IFNAME.test(n.tap)) throw bad(`tap name ${JSON.stringify(n.tap)} is not a valid interface name`);
    if (taps.has(n.tap)) throw bad(`tap ${n.tap} is given twice`);
    taps.add(n.tap);
    const mac = typeof n.mac === 'string' ? n.mac.toLowerCase() : '';
    if (!MAC.test(mac)) throw bad(`MAC ${JSON.stringify(n.mac)} is not six colon-separated hex bytes`);
    // Bit 0 of the first byte is the group bit: a NIC's own address must be unicast.
    if (parseInt(mac.slice(0, 2), 16) & 1) throw bad(`MAC ${n.mac} is a multicast address`);
    if (mac === '00:00:00:00:00:00') throw bad('MAC 00:00:00:00:00:00 is not an address');
    if (macs.has(mac)) throw bad(`MAC ${n.mac} is given twice`);
    macs.add(mac);
    if (!Number.isInteger(n.mtu) || n.mtu < VM_NET_MTU.min || n.mtu > VM_NET_MTU.max) {
      throw bad(`MTU ${String(n.mtu)} of ${n.tap} is outside ${VM_NET_MTU.min}-${VM_NET_MTU.max}`);
    }
  }
  return netns;
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
   * The process running the VM: its jailer (killing it kills the VMM), QEMU's or the native VMM's
   * (src/vmm/native-process/).
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
