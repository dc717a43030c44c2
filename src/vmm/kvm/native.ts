import { loadNative } from '../../common/native.js';

/** The slice of the C++ addon (native/src/kvm_vm.cc) the native VMM uses. */

export type VcpuStateKind = 'regs' | 'sregs' | 'fpu' | 'lapic' | 'mpstate';

export const EXIT_PIO = 0;
export const EXIT_MMIO = 1;
export const EXIT_STOPPED = 2;

/**
 * Called on the JS thread for every I/O or MMIO exit: `data` holds what a write wrote (a bigint for
 * 8-byte accesses), and the return value is what a read reads. For kind EXIT_STOPPED, `addr` is the
 * reason the vCPU thread ended ("stopped", "hlt", "shutdown", "poweroff", "reset", "error: ...").
 */
export type ExitCallback = (
  vcpu: number,
  kind: number,
  addr: number | string,
  size: number,
  write: boolean,
  data: number | bigint,
) => number | bigint;

export interface NativeKvmVm {
  memory(): ArrayBuffer;
  memfd(): number;
  createVcpu(index: number): void;
  getVcpuState(index: number, kind: VcpuStateKind): Buffer;
  setVcpuState(index: number, kind: VcpuStateKind | 'msrs' | 'cpuid', data: Buffer): void;
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

export interface KvmAddon {
  KvmVm: new (devicePath: string, memBytes: number, regions: [number, number, number][]) => NativeKvmVm;
  kvmApiVersion(path?: string): number;
  kvmCheckExtension(cap: number, path?: string): number;
}

export function kvmAddon(): KvmAddon {
  return loadNative<KvmAddon>();
}
