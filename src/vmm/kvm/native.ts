import { loadNative } from '../../common/native.js';

/** The slice of the C++ addon (native/src/kvm_vm.cc) the native VMM uses. */

export type VcpuStateKind = 'regs' | 'sregs' | 'fpu' | 'lapic' | 'mpstate';

export const EXIT_PIO = 0;
export const EXIT_MMIO = 1;
export const EXIT_STOPPED = 2;

/**
 * Why a vCPU thread ended, indexed by the number the addon sends (VcpuStopReason in native/src/vcpu.h; the
 * addon exports its own table as `vcpuStopReasons`, and test/vmm/vm-end.test.ts checks the two agree).
 */
export const VCPU_STOP_REASONS = ['stopped', 'hlt', 'shutdown', 'reset', 'poweroff', 'crash', 'error'] as const;

/** A reason from the addon, or 'destroyed' for a vCPU whose thread was still running when the VM was destroyed. */
export type VcpuStopReason = (typeof VCPU_STOP_REASONS)[number] | 'destroyed';

export interface VcpuStop {
  vcpu: number;
  reason: VcpuStopReason;
  /** For people only (never matched): what failed, for 'error'. */
  detail?: string;
}

/**
 * The addon's stop event as a VcpuStop. The number is checked rather than trusted: an addon built from other
 * sources reads as an error that names the number, not as some other reason.
 */
export function decodeVcpuStop(vcpu: number, code: unknown, detail: unknown): VcpuStop {
  const reason = typeof code === 'number' && Number.isInteger(code) ? VCPU_STOP_REASONS[code] : undefined;
  if (!reason) return { vcpu, reason: 'error', detail: `the addon reported an unknown vCPU stop reason ${String(code)}` };
  return typeof detail === 'string' && detail !== '' ? { vcpu, reason, detail } : { vcpu, reason };
}

/**
 * Called on the JS thread for every I/O or MMIO exit: `data` holds what a write wrote (a bigint for
 * 8-byte accesses), and the return value is what a read reads. When a vCPU thread ends the call is
 * (vcpu, EXIT_STOPPED, reason, detail): `reason` indexes VCPU_STOP_REASONS (see decodeVcpuStop).
 */
export type ExitEvent =
  | [vcpu: number, kind: typeof EXIT_PIO | typeof EXIT_MMIO, addr: number, size: number, write: boolean, data: number | bigint]
  | [vcpu: number, kind: typeof EXIT_STOPPED, reason: number, detail: string];
export type ExitCallback = (...event: ExitEvent) => number | bigint;

export interface NativeKvmVm {
  memory(): ArrayBuffer;
  memfd(): number;
  /** Gives the host pages behind [offset, offset + length) of the RAM file back; page-aligned and inside it, or it throws. */
  discard(offset: number, length: number): void;
  createVcpu(index: number): void;
  /** `size` bytes of file `fd` (from offset 0) at guest-physical `guestAddr`, read-only (KVM_MEM_READONLY). */
  mapReadonly(fd: number, guestAddr: number, size: number): void;
  getVcpuState(index: number, kind: VcpuStateKind): Buffer;
  setVcpuState(index: number, kind: VcpuStateKind | 'msrs' | 'cpuid', data: Buffer): void;
  /** KVM_GET_MSRS: `entries` as encodeMsrs makes them; returns a copy with the values read. */
  getMsrs(index: number, entries: Buffer): Buffer;
  /** Per vCPU thread: [inside KVM_RUN now, KVM_RUN entries so far, parked by pause(), thread running] (flags 0/1). */
  vcpuThreads(): [number, number, number, number][];
  /** KVM_GET_TSC_KHZ of a vCPU. */
  tscKhz(index: number): number;
  supportedCpuid(): Buffer;
  /**
   * `fastPio`: [base, size, readValue] port ranges the vCPU threads answer without JS; `spinNs`: how
   * long a vCPU polls for JS's answer before sleeping; `postWrites`: vCPUs go on after a write without
   * waiting for onEvent to run it (its return value is then ignored).
   */
  start(onEvent: ExitCallback, fastPio?: [number, number, number][], spinNs?: number, postWrites?: boolean): void;
  /** Per vCPU: [port exits to JS, MMIO exits to JS, port exits answered natively, answers caught while spinning, ns waiting for JS, posted writes]. */
  exitStats(): [number, number, number, number, number, number][];
  pause(): void;
  resume(): void;
  stop(): void;
  ioeventfd(addr: number, length: number, pio: boolean, datamatch: number, onNotify: (count: number) => void): void;
  irqfd(gsi: number): number;
  triggerIrqfd(id: number): void;
  irqfdFd(id: number): number;
  kickEventfd(addr: number, length: number, datamatch: number): number;
  irqLine(gsi: number, level: boolean): void;
  destroy(): void;
}

/** Guest RAM (one shared memfd mapping) without a VM: the device models' tests discard real pages with it. */
export interface NativeGuestRam {
  memory(): ArrayBuffer;
  memfd(): number;
  discard(offset: number, length: number): void;
}

export interface KvmAddon {
  GuestRam: new (bytes: number) => NativeGuestRam;
  KvmVm: new (devicePath: string, memBytes: number, regions: [number, number, number][]) => NativeKvmVm;
  kvmApiVersion(path?: string): number;
  kvmCheckExtension(cap: number, path?: string): number;
  vcpuStopReasons: Record<string, number>;
}

export function kvmAddon(): KvmAddon {
  return loadNative<KvmAddon>();
}
