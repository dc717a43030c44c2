import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { VrunError, errorMessage } from '../../common/errors.js';
import { rootLogger, type Logger } from '../../common/log.js';
import { Bus } from '../devices/bus.js';
import { ramFileDiscarder, type DiscardRam } from '../virtio/devices/balloon.js';
import { GuestMemory } from '../virtio/guest-memory.js';
import type { GuestRange } from '../layout.js';
import { decodeVcpuStop, EXIT_MMIO, EXIT_PIO, EXIT_STOPPED, kvmAddon, type NativeKvmVm, type VcpuStateKind, type VcpuStop } from './native.js';
import { decodeRegs, encodeMsrs, encodeRegs, MSR_ENTRY_SIZE, type RegName, type Regs } from './vcpu-state.js';

/**
 * A KVM virtual machine driven from TypeScript: guest RAM (one shared memfd, seen here as a Buffer
 * without copies), vCPUs whose I/O-port and MMIO exits land on two buses of device models, and the
 * ioeventfd/irqfd plumbing for virtio. One VM runs once: start it, wait for every vCPU to stop,
 * destroy it. destroy() joins every vCPU thread and closes every fd the VM opened.
 */

export interface VmOptions {
  /** Bytes of guest RAM (the size of the memfd). */
  memBytes: number;
  /** Where the RAM file appears in guest-physical space; defaults to one range at 0. */
  regions?: { guestAddr: number; size: number; fileOffset: number }[];
  vcpus: number;
  devicePath?: string;
  logger?: Logger;
  /**
   * How long a vCPU thread polls for a device model's answer before it sleeps (ns, 0..1e6). Each exit
   * that reaches JS costs two cross-thread wake-ups otherwise; defaults to DEFAULT_ANSWER_SPIN_NS.
   */
  answerSpinNs?: number;
  /**
   * Writes do not hold the vCPU: it resumes the guest at once and the device model runs the write
   * later, before any later exit of the same vCPU (exits reach JS in order), so a read after a write
   * still sees it. Side effects that reach the guest asynchronously anyway (interrupts, used rings)
   * just come a little later. Defaults to true.
   */
  postWrites?: boolean;
}

/** Exit counts as the native side keeps them (summed over vCPUs) plus the busiest exit addresses. */
export interface ExitStats {
  /** Port exits that went to a device model in JS. */
  pioToJs: number;
  mmioToJs: number;
  /** Port exits the vCPU threads answered themselves (ports with no device model). */
  pioNative: number;
  /** JS answers that arrived while the vCPU was still polling (no sleep, no wake-up). */
  answeredWhileSpinning: number;
  /** Writes (among the exits to JS) the vCPU did not wait for. */
  postedWrites: number;
  /** Total time vCPUs waited for JS answers. */
  waitMs: number;
  /** Exits to JS by "pio|mmio read|write 0xADDR", busiest first. */
  byAddress: [string, number][];
}

export const DEFAULT_ANSWER_SPIN_NS = 0;
/** Distinct addresses the exit profile tracks; the guest picks the addresses, so the map is bounded. */
const PROFILE_KEYS = 256;

const KVM_CAP_MAX_VCPUS = 66;

export type { VcpuStop, VcpuStopReason } from './native.js';

/** Why one vCPU stopping stops the others (see run()). */
const MACHINE_WIDE_STOPS: ReadonlySet<string> = new Set(['shutdown', 'reset', 'poweroff', 'crash', 'error']);

export class Vm {
  readonly pio: Bus;
  readonly mmio: Bus;
  readonly ram: Buffer;
  readonly memory: GuestMemory;
  /** Gives the host memory behind a view of guest RAM back (free page reporting). */
  readonly discard: DiscardRam;
  readonly vcpus: number;
  private readonly native: NativeKvmVm;
  private readonly logger: Logger;
  private destroyed = false;
  private started = false;
  private stops: VcpuStop[] = [];
  private waiters: ((stops: VcpuStop[]) => void)[] = [];
  private readonly fastPio: [number, number, number][] = [];
  private readonly answerSpinNs: number;
  private readonly postWrites: boolean;
  private readonly profile = new Map<string, number>();
  private profileOverflow = 0;
  /** The first device-model exception, which also stops the VM: a device that threw cannot be trusted further. */
  deviceError: Error | undefined;

  constructor(opts: VmOptions) {
    const { memBytes, vcpus } = opts;
    if (!Number.isSafeInteger(memBytes) || memBytes <= 0 || memBytes % 4096 !== 0) {
      throw new VrunError(`guest memory of ${memBytes} bytes is not a positive multiple of 4 KiB`);
    }
    if (!Number.isInteger(vcpus) || vcpus < 1) throw new VrunError(`vCPU count ${vcpus} must be at least 1`);
    const regions = opts.regions ?? [{ guestAddr: 0, size: memBytes, fileOffset: 0 }];
    this.logger = opts.logger ?? rootLogger();
    this.pio = new Bus('pio', this.logger);
    this.mmio = new Bus('mmio', this.logger);
    const addon = kvmAddon();
    try {
      this.native = new addon.KvmVm(opts.devicePath ?? '/dev/kvm', memBytes, regions.map((r) => [r.guestAddr, r.size, r.fileOffset]));
    } catch (err) {
      throw new VrunError(`cannot create a KVM VM: ${errorMessage(err)}`, { cause: err });
    }
    // KVM_CAP_MAX_VCPUS: refuse before creating any vCPU rather than after creating hundreds.
    const max = addon.kvmCheckExtension(KVM_CAP_MAX_VCPUS, opts.devicePath ?? '/dev/kvm');
    if (max > 0 && vcpus > max) {
      this.native.destroy();
      throw new VrunError(`${vcpus} vCPUs requested, but this host's KVM allows at most ${max} vCPUs per VM`);
    }
    try {
      for (let i = 0; i < vcpus; i++) this.native.createVcpu(i);
    } catch (err) {
      this.native.destroy();
      throw new VrunError(`cannot create ${vcpus} vCPUs: ${errorMessage(err)}`, { cause: err });
    }
    this.vcpus = vcpus;
    this.answerSpinNs = opts.answerSpinNs ?? DEFAULT_ANSWER_SPIN_NS;
    this.postWrites = opts.postWrites ?? true;
    if (!Number.isInteger(this.answerSpinNs) || this.answerSpinNs < 0 || this.answerSpinNs > 1e6) {
      this.native.destroy();
      throw new VrunError(`answer spin of ${this.answerSpinNs} ns is not an integer between 0 and 1000000`);
    }
    this.ram = Buffer.from(this.native.memory());
    this.memory = new GuestMemory(regions.map((r) => ({ guestAddr: r.guestAddr, buf: this.ram.subarray(r.fileOffset, r.fileOffset + r.size) })));
    this.discard = ramFileDiscarder(this.ram, (offset, length) => this.native.discard(offset, length));
  }

  /**
   * Maps the first `range.size` bytes of `file` at `range.addr`, read-only: the guest reads the host's page cache
   * of the file (shared by every VM that maps it) and its writes become MMIO exits that hit no device. Not part
   * of `memory`, so no device can be asked to write there either.
   */
  mapReadonlyFile(file: string, range: GuestRange): void {
    const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const size = fstatSync(fd).size;
      if (size < range.size) throw new VrunError(`${file} has ${size} bytes, fewer than the ${range.size} to map`);
      this.native.mapReadonly(fd, range.addr, range.size);
    } catch (err) {
      throw err instanceof VrunError ? err : new VrunError(`cannot map ${file} into the guest: ${errorMessage(err)}`, { cause: err });
    } finally {
      closeSync(fd);
    }
  }

  get memfd(): number {
    return this.native.memfd();
  }

  state(vcpu: number, kind: VcpuStateKind): Buffer {
    return this.native.getVcpuState(vcpu, kind);
  }

  setState(vcpu: number, kind: VcpuStateKind | 'msrs' | 'cpuid', data: Buffer): void {
    this.native.setVcpuState(vcpu, kind, data);
  }

  /** The values of the given MSRs, in order (KVM_GET_MSRS). */
  msrs(vcpu: number, indices: readonly number[]): bigint[] {
    const out = this.native.getMsrs(vcpu, encodeMsrs(indices.map((index) => ({ index, data: 0 }))));
    return indices.map((_, i) => out.readBigUInt64LE(MSR_ENTRY_SIZE * i + 8));
  }

  /** The vCPUs whose threads have ended so far, and why (the machine ends when all have). */
  stoppedVcpus(): VcpuStop[] {
    return [...this.stops];
  }

  /** Per vCPU thread, read without pausing: whether it is inside KVM_RUN now and how often it entered it. */
  vcpuThreads(): { inKvmRun: boolean; kvmRuns: number; parked: boolean; running: boolean }[] {
    return this.native.vcpuThreads().map(([inRun, runs, parked, running]) => ({ inKvmRun: inRun === 1, kvmRuns: runs, parked: parked === 1, running: running === 1 }));
  }

  tscKhz(vcpu: number): number {
    return this.native.tscKhz(vcpu);
  }

  regs(vcpu: number): Regs {
    return decodeRegs(this.native.getVcpuState(vcpu, 'regs'));
  }

  setRegs(vcpu: number, regs: Partial<Record<RegName, bigint | number>>): void {
    this.native.setVcpuState(vcpu, 'regs', encodeRegs(this.native.getVcpuState(vcpu, 'regs'), regs));
  }

  /** Read-modify-write of the special registers (segments, descriptor tables, control registers). */
  editSregs(vcpu: number, edit: (sregs: Buffer) => void): void {
    const sregs = this.native.getVcpuState(vcpu, 'sregs');
    edit(sregs);
    this.native.setVcpuState(vcpu, 'sregs', sregs);
  }

  supportedCpuid(): Buffer {
    return this.native.supportedCpuid();
  }

  /** Queue notifications: guest writes to `addr` signal an eventfd the loop watches, no JS exit. */
  ioeventfd(addr: number, length: 0 | 1 | 2 | 4 | 8, pio: boolean, datamatch: number | undefined, onNotify: () => void): void {
    this.native.ioeventfd(addr, length, pio, datamatch ?? -1, () => this.guard(onNotify));
  }

  /** An interrupt source: the returned function raises an edge on `gsi` straight into the in-kernel irqchip. */
  irqfd(gsi: number): () => void {
    const id = this.native.irqfd(gsi);
    return () => {
      if (!this.destroyed) this.native.triggerIrqfd(id);
    };
  }

  /** An irqfd whose eventfd is also handed out (to a vhost-user backend) besides the trigger. */
  sharedIrqfd(gsi: number): { trigger: () => void; fd: number } {
    const id = this.native.irqfd(gsi);
    return { trigger: () => !this.destroyed && this.native.triggerIrqfd(id), fd: this.native.irqfdFd(id) };
  }

  /** An ioeventfd for an external backend: guest writes of `datamatch` to `addr` signal it. Closed by destroy(). */
  kickEventfd(addr: number, length: 4, datamatch: number): number {
    return this.native.kickEventfd(addr, length, datamatch);
  }

  /**
   * A port range with no device model: the vCPU threads drop writes and answer reads with `readValue`
   * themselves, without an exit to JS. Only before run(); the range is also kept on the port bus so a
   * device inserted over it later still clashes.
   */
  answerPortsNatively(base: number, size: number, readValue: number, name: string): void {
    if (this.started) throw new VrunError(`port range ${name} must be registered before the VM starts`);
    if (!Number.isInteger(readValue) || readValue < 0 || readValue > 0xffff_ffff) throw new VrunError(`read value ${readValue} for ${name} is not a 32-bit value`);
    this.pio.insert(base, size, { name, read: () => readValue, write: () => {} });
    this.fastPio.push([base, size, readValue]);
  }

  exitStats(): ExitStats {
    const rows = this.native.exitStats();
    const sum = (k: number) => rows.reduce((a, r) => a + r[k]!, 0);
    const byAddress = [...this.profile.entries()].sort((a, b) => b[1] - a[1]);
    if (this.profileOverflow > 0) byAddress.push(['other addresses', this.profileOverflow]);
    return {
      pioToJs: sum(0),
      mmioToJs: sum(1),
      pioNative: sum(2),
      answeredWhileSpinning: sum(3),
      waitMs: Math.round(sum(4) / 1e6),
      postedWrites: sum(5),
      byAddress,
    };
  }

  private count(kind: number, addr: number, write: boolean): void {
    const key = `${kind === EXIT_PIO ? 'pio' : 'mmio'} ${write ? 'write' : 'read'} 0x${addr.toString(16)}`;
    const n = this.profile.get(key);
    if (n !== undefined) this.profile.set(key, n + 1);
    else if (this.profile.size < PROFILE_KEYS) this.profile.set(key, 1);
    else this.profileOverflow++;
  }

  irqLine(gsi: number, level: boolean): void {
    this.native.irqLine(gsi, level);
  }

  /** Starts every vCPU; resolves once all of them stopped, with why. */
  run(): Promise<VcpuStop[]> {
    if (this.destroyed) return Promise.reject(new VrunError('the VM was destroyed'));
    if (this.started) return this.wait();
    this.started = true;
    this.native.start((...event) => {
      if (event[1] === EXIT_STOPPED) {
        const stop = decodeVcpuStop(event[0], event[2], event[3]);
        this.stops.push(stop);
        if (this.stops.length === this.vcpus) this.settle();
        // A triple fault, reset, power-off, crash or error of one vCPU is the machine's: a PC resets all its CPUs
        // together. The other vCPUs would otherwise run on without it, a guest that neither works nor ends.
        else if (MACHINE_WIDE_STOPS.has(stop.reason)) this.native.stop();
        return 0;
      }
      const [, kind, addr, size, write, data] = event;
      const bus = kind === EXIT_PIO ? this.pio : kind === EXIT_MMIO ? this.mmio : undefined;
      if (!bus || typeof addr !== 'number') return 0;
      this.count(kind, addr, write);
      try {
        return size === 8 ? access64(bus, addr, write, data) : access(bus, addr, size, write, data);
      } catch (err) {
        this.failDevice(err);
        return 0;
      }
    }, this.fastPio, this.answerSpinNs, this.postWrites);
    return this.wait();
  }

  wait(): Promise<VcpuStop[]> {
    if (this.started && this.stops.length === this.vcpus) return Promise.resolve([...this.stops]);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Asks every vCPU to leave the guest; run() resolves when they all did. */
  stop(): void {
    if (!this.destroyed) this.native.stop();
  }

  pause(): void {
    if (!this.destroyed) this.native.pause();
  }

  resume(): void {
    if (!this.destroyed) this.native.resume();
  }

  /** Stops the vCPUs, joins their threads and closes every fd. Safe to call more than once. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.native.destroy();
    if (this.started && this.stops.length < this.vcpus) {
      for (let i = 0; i < this.vcpus; i++) if (!this.stops.some((s) => s.vcpu === i)) this.stops.push({ vcpu: i, reason: 'destroyed' });
    }
    this.settle();
  }

  private settle(): void {
    const stops = [...this.stops];
    for (const w of this.waiters.splice(0)) w(stops);
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.failDevice(err);
    }
  }

  private failDevice(err: unknown): void {
    if (!this.deviceError) {
      this.deviceError = err instanceof Error ? err : new Error(String(err));
      this.logger.error({ err: this.deviceError.message }, 'device model failed; stopping the VM');
    }
    this.stop();
  }
}

function access(bus: Bus, addr: number, size: number, write: boolean, data: number | bigint): number {
  if (write) {
    bus.write(addr, size, Number(data));
    return 0;
  }
  return bus.read(addr, size);
}

/** 64-bit MMIO as two 32-bit halves, low first, as virtio-mmio defines its wide fields. */
function access64(bus: Bus, addr: number, write: boolean, data: number | bigint): bigint {
  if (write) {
    const v = BigInt(data);
    bus.write(addr, 4, Number(v & 0xffff_ffffn));
    bus.write(addr + 4, 4, Number(v >> 32n));
    return 0n;
  }
  return BigInt(bus.read(addr, 4)) | (BigInt(bus.read(addr + 4, 4)) << 32n);
}
