import { existsSync, realpathSync } from 'node:fs';
import { VrunError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { hasHardwareVirtualization } from '../kvm-lab/placement.js';
import type { ConsoleLog } from '../vmm/console-log.js';
import { kvmAddon } from '../vmm/kvm/native.js';
import type { QemuSpec } from '../vmm/qemu/command.js';
import { QemuVm } from '../vmm/qemu/machine.js';
import { canonicalPath, prepareQemuJail, TCG_TB_MIB, type QemuJail } from '../vmm/jail/qemu-jail.js';

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
  /**
   * A root-owned directory, made by the caller, holding agentSocket and every share's socketPath and nothing
   * else: the jailed QEMU gets it read-write (it is chowned to the pod's jail uid).
   */
  runDir: string;
  agentSocket: string;
  shares: { tag: string; socketPath: string }[];
  consoleLog: string;
}

export interface VmExit {
  reason: 'reboot' | 'killed' | 'error';
  guestStatus?: number;
  panic: boolean;
  detail: string;
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

/**
 * QEMU runs confined by native/jailer (own uid/gid, namespaces, a read-only root of just what it needs,
 * host cgroups, rlimits) and by its own seccomp filter. VRUN_JAIL=0 starts it unconfined, for debugging only.
 */
export function launchQemu(decision: BackendDecision, spec: VmLaunch, logger?: Logger): RunningVm {
  const unjailed = process.env.VRUN_JAIL === '0';
  const kernel = realpathSync(spec.kernel);
  const initrd = realpathSync(spec.initrd);
  const qemuSpec: QemuSpec = {
    kernel,
    initrd,
    cmdline: spec.cmdline,
    vcpus: spec.vcpus,
    memoryMiB: spec.memoryMiB,
    accel: decision.accel,
    ports: [{ name: 'vrun.agent', socketPath: canonicalPath(spec.agentSocket) }],
    shares: spec.shares.map((s) => ({ tag: s.tag, socketPath: canonicalPath(s.socketPath) })),
    sandbox: true,
    tcgTbMiB: TCG_TB_MIB,
  };
  let jail: QemuJail | undefined;
  if (unjailed) {
    logger?.warn('VRUN_JAIL=0: QEMU runs as root, unconfined (no jail, no per-pod uid, no cgroups); for debugging only');
  } else {
    jail = prepareQemuJail({
      runDir: spec.runDir,
      files: [kernel, initrd],
      sockets: qemuSpec.shares?.map((s) => s.socketPath) ?? [],
      accel: decision.accel,
      memoryMiB: spec.memoryMiB,
      vcpus: spec.vcpus,
      logger,
    });
  }
  let vm: QemuVm;
  try {
    vm = QemuVm.start(qemuSpec, { consoleLog: spec.consoleLog, logger, wrap: jail?.wrap });
  } catch (err) {
    void jail?.teardown();
    throw err;
  }
  jail?.started(vm.pid);
  const exited = vm.exited.then(async (e): Promise<VmExit> => {
    await jail?.teardown().catch((err: unknown) => logger?.warn({ err: errorMessage(err) }, 'tearing down the VMM jail failed'));
    // The jailer's own failures (exit 125) say what went wrong on stderr in one line; QEMU's start-up errors too.
    const said = e.code ? e.stderr.split('\n').find((l) => l.startsWith('vrun-jailer: ') || /^qemu(-system-[^:]*)?: /.test(l)) : undefined;
    return {
      reason: e.reason,
      guestStatus: e.guestStatus,
      panic: e.panic,
      detail: e.signal ? `QEMU killed by ${e.signal}` : `QEMU exited with code ${e.code}${said ? ` (${said})` : ''}`,
    };
  });
  return {
    backend: `qemu-${decision.accel}`,
    pid: vm.pid,
    vmmPid: () => vm.vmmPid(),
    console: vm.console,
    exited,
    kill: async () => {
      await vm.kill();
      await exited;
    },
  };
}
