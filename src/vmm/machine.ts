import { EventEmitter } from 'node:events';
import { existsSync, statSync } from 'node:fs';
import { VrunError, errorMessage } from '../common/errors.js';
import { rootLogger, type Logger } from '../common/log.js';
import { buildCmdline } from './boot/cmdline.js';
import { vcpuCpuid, type CpuidEntry } from './boot/cpuid.js';
import { directBoot } from './boot/direct-boot.js';
import { openFileSource, parseElfKernel } from './boot/elf.js';
import type { BootCpuState } from './boot/params.js';
import { MAX_VCPUS } from './boot/mptable.js';
import { ConsoleLog } from './console-log.js';
import { ExitPort, EXIT_PORT_BASE, EXIT_PORT_SIZE } from './devices/exit-port.js';
import { I8042, I8042_PORT_BASE, I8042_PORT_SIZE } from './devices/i8042.js';
import { attachSilentPorts } from './devices/legacy-ports.js';
import { Serial, SERIAL_PORT_BASE, SERIAL_PORT_SIZE } from './devices/serial.js';
import { Vm, type VcpuStop, type VmOptions } from './kvm/vm.js';
import { CPUID_ENTRY_SIZE as CPUID_ENTRY, encodeMsrs, FPU_FCW_OFFSET, FPU_MXCSR_OFFSET, writeControl, writeSegment, writeTable } from './kvm/vcpu-state.js';
import { USERLAND_PMEM_PARAM } from '../guest-image/guest-contract.js';
import { lowRamEnd, pmemRange, ramRegions, SERIAL_IRQ, virtioMmioSlot, type GuestRange } from './layout.js';
import { VirtioConsole, type ConsolePortSpec } from './virtio/devices/console.js';
import { PortSocket } from './virtio/devices/console-socket.js';
import { VHOST_USER_ADDR_BASE, VirtioFs } from './virtio/devices/fs.js';
import { VirtioBalloon } from './virtio/devices/balloon.js';
import { VirtioRng } from './virtio/devices/rng.js';
import { VirtioNet } from './virtio/devices/net.js';
import { NativeTap } from './virtio/devices/net-tap.js';
import { VhostUserFrontend } from './vhost-user/frontend.js';
import { REG, VirtioMmio, type VirtioDevice } from './virtio/mmio.js';
import { deadlineState, MSR_IA32_TSC, MSR_IA32_TSC_DEADLINE, setLintDelivery, summarizeLapic } from './kvm/lapic-state.js';
import { stuckInKvm, type DiagnosedVcpu } from './kvm/stuck-in-kvm.js';

/**
 * The native VMM's machine: a KVM VM with guest RAM, the legacy PC devices Linux expects (8250 UART,
 * i8042 for reset, the exit port), virtio-mmio devices (console with named ports, fs, net, rng), direct boot
 * of the guest kernel. It emits two events: 'end' once, with how the guest ended (a MachineEnd, which
 * start() and wait() also resolve with), and 'device-error' when a device model threw, which also ends it.
 * src/vmm/native-backend.ts puts a MachineEnd in the backends' common words (VmEnd).
 */

export interface VmPortSpec extends ConsolePortSpec {
  /** Host unix socket the port is surfaced on. */
  socket?: string;
}

export interface CreateVmOptions {
  kernel: string;
  initrd?: string;
  /** Extra command-line parameters (after the machine's own). */
  cmdline?: string;
  vcpus: number;
  memoryMiB: number;
  ports?: VmPortSpec[];
  /** virtio-fs shares, each served by a vhost-user backend (virtiofsd) already listening on `socket`. */
  shares?: { tag: string; socket: string }[];
  /**
   * virtio-net NICs, each on a persistent tap the pod's network made: opened here by name (in `netns` when
   * given, else here), or already open on fd `tapFd` (handed over by vrun-jailer to the jailed VMM process).
   */
  nets?: { tapName: string; mac: string; mtu?: number; netns?: string; tapFd?: number }[];
  /** File receiving the serial console. */
  consoleLog?: string;
  /** Hears the serial console's bytes as they come (the jailed VMM process passes them on to the sandbox). */
  onConsole?: (bytes: Buffer) => void;
  logger?: Logger;
  /** How vCPU exits reach the device models (benchmarks compare settings; the defaults are the measured best). */
  exits?: Pick<VmOptions, 'answerSpinNs' | 'postWrites'>;
  /** A virtio-balloon that gives the memory the guest frees back to the host (default on; QEMU's backend has the same). */
  freePageReporting?: boolean;
  /**
   * The shared userland image (guest-image's userland.ext4), mapped read-only above guest RAM as persistent
   * memory that the guest mounts with DAX: every VM reads the same host page cache and keeps no copy of its own.
   */
  userlandPmem?: string;
}

/** Linux hot-adds persistent memory in 2 MiB subsections; the image builder pads the image to a whole number. */
const PMEM_SIZE_ALIGN = 2 * 1024 * 1024;
/** Far above the ~120 MiB image, and a bound on what a bad path can make the VMM map. */
const MAX_PMEM_BYTES = 4 * 1024 * 1024 * 1024;

function userlandRange(file: string, memBytes: number): GuestRange {
  let size: number;
  try {
    size = statSync(file).size;
  } catch (err) {
    throw new VrunError(`userland image ${file}: ${errorMessage(err)}`, { cause: err });
  }
  if (size === 0 || size % PMEM_SIZE_ALIGN !== 0 || size > MAX_PMEM_BYTES) {
    throw new VrunError(`userland image ${file} is ${size} bytes: persistent memory needs a whole number of 2 MiB, at most 4 GiB (rebuild the guest image)`);
  }
  return pmemRange(memBytes, size);
}

export type MachineEnd =
  | { kind: 'exit'; status: number }
  | { kind: 'poweroff' }
  | { kind: 'reboot' }
  | { kind: 'panic'; line: string }
  | { kind: 'stopped' }
  | { kind: 'error'; message: string };

/**
 * How the machine ended once every vCPU thread did, when nothing ended it before (the console's last words,
 * the exit port, the i8042 reset, a stop: those come first and this is then ignored). A failure wins over
 * anything the guest did: a vCPU error, then a device model's. A triple fault (KVM_EXIT_SHUTDOWN; the guest
 * reboots with reboot=t) and a reset event are a reboot; a crash event (the guest's crash notifier, for KVMs
 * that have one) is a panic; a vCPU that halted or was asked to stop says nothing about the guest.
 */
export function machineEndFromStops(stops: readonly VcpuStop[], deviceError?: string): MachineEnd {
  const err = stops.find((s) => s.reason === 'error');
  if (err) return { kind: 'error', message: `vCPU ${err.vcpu}: ${err.detail ?? 'failed'}` };
  if (deviceError !== undefined) return { kind: 'error', message: `device model failed: ${deviceError}` };
  if (stops.some((s) => s.reason === 'crash')) return { kind: 'panic', line: 'the guest reported a crash (KVM_SYSTEM_EVENT_CRASH)' };
  if (stops.some((s) => s.reason === 'shutdown' || s.reason === 'reset')) return { kind: 'reboot' };
  if (stops.some((s) => s.reason === 'poweroff')) return { kind: 'poweroff' };
  return { kind: 'stopped' };
}

const MIN_MEMORY_MIB = 64;
/**
 * kernel_power_off()'s message, after the printk timestamp. Without a power-off driver (no ACPI here)
 * the kernel turns a poweroff into a halt and says "System halted" instead.
 */
const POWER_DOWN = /^(\[[\s\d.]+\] )?reboot: (Power down|System halted)$/;
/** KVM_MP_STATE_* by value. */
const MP_STATES = ['runnable', 'uninitialized', 'init-received', 'halted', 'sipi-received', 'stopped', 'check-stop', 'operating', 'load'];
/** How long diagnose() waits for the kicked vCPU threads to leave KVM_RUN before it reads what it can. */
const DIAGNOSE_PAUSE_WAIT_MS = 2000;

export class Machine extends EventEmitter<{ end: [MachineEnd]; 'device-error': [string] }> {
  readonly console: ConsoleLog;
  readonly consoleDevice: VirtioConsole | undefined;
  private readonly sockets: PortSocket[] = [];
  private readonly backends: VhostUserFrontend[] = [];
  private readonly nets: VirtioNet[] = [];
  private ended: MachineEnd | undefined;
  private runPromise: Promise<VcpuStop[]> | undefined;
  private serial: Serial | undefined;
  private readonly transports: VirtioMmio[] = [];
  private diagnosing: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly vm: Vm,
    private readonly boot: BootCpuState,
    readonly opts: CreateVmOptions,
    private readonly logger: Logger,
    consoleDevice: VirtioConsole | undefined,
  ) {
    super();
    this.console = new ConsoleLog(opts.consoleLog);
    this.consoleDevice = consoleDevice;
    this.console.onLine((line) => this.onConsoleLine(line));
  }

  static async create(opts: CreateVmOptions): Promise<Machine> {
    const logger = opts.logger ?? rootLogger();
    // Everything that can be checked without KVM is checked first, so bad input costs no VM.
    if (!Number.isInteger(opts.memoryMiB) || opts.memoryMiB < MIN_MEMORY_MIB) {
      throw new VrunError(`guest memory of ${opts.memoryMiB} MiB is below the ${MIN_MEMORY_MIB} MiB minimum`);
    }
    if (!Number.isInteger(opts.vcpus) || opts.vcpus < 1 || opts.vcpus > MAX_VCPUS) {
      throw new VrunError(`${opts.vcpus} vCPUs requested: between 1 and ${MAX_VCPUS} are supported`);
    }
    const memBytes = opts.memoryMiB * 1024 * 1024;
    checkKernel(opts.kernel, memBytes);
    if (opts.initrd && !existsSync(opts.initrd)) throw new VrunError(`initrd ${opts.initrd} does not exist`);
    const userland = opts.userlandPmem;
    const pmem = userland === undefined ? undefined : userlandRange(userland, memBytes);
    const backends: VhostUserFrontend[] = [];
    const sockets: PortSocket[] = [];
    const nets: VirtioNet[] = [];
    let vm: Vm | undefined;
    try {
      for (const n of opts.nets ?? []) {
        const tap = n.tapFd !== undefined ? NativeTap.adopt(n.tapFd, n.tapName) : NativeTap.open(n.tapName, { netns: n.netns });
        try {
          nets.push(new VirtioNet(tap, { mac: n.mac, mtu: n.mtu, name: `net:${n.tapName}` }, logger));
        } catch (err) {
          tap.close();
          throw err;
        }
      }
      for (const share of opts.shares ?? []) {
        const backend = VhostUserFrontend.connect(share.socket);
        backends.push(backend);
        backend.handshake();
      }
      const regions = ramRegions(memBytes);
      const created = new Vm({ memBytes, vcpus: opts.vcpus, regions, logger, ...opts.exits });
      vm = created;
      if (userland !== undefined && pmem) created.mapReadonlyFile(userland, pmem);
      const devices: VirtioDevice[] = [];
      (opts.shares ?? []).forEach((share, i) => {
        const backend = backends[i]!;
        backend.setMemTable(
          regions.map((r) => ({ guestAddr: r.guestAddr, size: r.size, userAddr: VHOST_USER_ADDR_BASE + r.guestAddr, mmapOffset: r.fileOffset })),
          created.memfd,
        );
        devices.push(new VirtioFs(share.tag, backend, logger));
      });
      const consoleDevice = opts.ports && opts.ports.length > 0 ? new VirtioConsole(opts.ports, logger) : undefined;
      if (consoleDevice) devices.push(consoleDevice);
      devices.push(...nets, new VirtioRng());
      if (opts.freePageReporting !== false) devices.push(new VirtioBalloon(created.discard, logger));
      const slots = devices.map((_, i) => virtioMmioSlot(i));
      const extra = [opts.cmdline, pmem ? USERLAND_PMEM_PARAM : undefined].filter((p) => p).join(' ');
      const cmdline = buildCmdline({ virtio: slots, extra: extra || undefined });
      const result = directBoot(created.ram.subarray(0, lowRamEnd(memBytes)), {
        kernel: opts.kernel,
        initrd: opts.initrd,
        cmdline: cmdline.toBytes(),
        vcpus: opts.vcpus,
        memBytes,
        ...(pmem ? { pmem } : {}),
      });
      const m = new Machine(created, result.cpu, opts, logger, consoleDevice);
      m.attachDevices(devices, slots);
      m.setupVcpus();
      for (const p of opts.ports ?? []) {
        const port = p.socket ? consoleDevice?.port(p.name) : undefined;
        if (port && p.socket) sockets.push(await PortSocket.listen(p.socket, port, logger));
      }
      m.backends.push(...backends);
      m.sockets.push(...sockets);
      m.nets.push(...nets);
      return m;
    } catch (err) {
      for (const s of sockets) s.close();
      for (const b of backends) b.close();
      for (const n of nets) n.close();
      vm?.destroy();
      throw err instanceof VrunError ? err : new VrunError(`cannot set up the VM: ${errorMessage(err)}`, { cause: err });
    }
  }

  private attachDevices(devices: VirtioDevice[], slots: ReturnType<typeof virtioMmioSlot>[]): void {
    const { vm } = this;
    const serialIrq = vm.irqfd(SERIAL_IRQ);
    const serial = new Serial({
      sink: (bytes) => this.onConsole(bytes),
      irq: (level) => level && serialIrq(),
      maxOutputBytes: 64 * 1024 * 1024,
    });
    this.serial = serial;
    vm.pio.insert(SERIAL_PORT_BASE, SERIAL_PORT_SIZE, serial);
    vm.pio.insert(I8042_PORT_BASE, I8042_PORT_SIZE, new I8042({ onReset: () => this.end({ kind: 'reboot' }) }));
    vm.pio.insert(EXIT_PORT_BASE, EXIT_PORT_SIZE, new ExitPort((status) => this.end({ kind: 'exit', status })));
    attachSilentPorts(vm);
    devices.forEach((dev, i) => {
      const slot = slots[i]!;
      if (dev instanceof VirtioFs) {
        // The backend kicks and interrupts directly; this process only sees config-space accesses.
        const irq = vm.sharedIrqfd(slot.irq);
        const transport = new VirtioMmio(dev, vm.memory, (level) => level && irq.trigger(), this.logger, true);
        this.transports.push(transport);
        vm.mmio.insert(slot.addr, slot.size, transport);
        dev.queueFds = dev.queueMaxSizes.map((_, q) => ({ kickFd: vm.kickEventfd(slot.addr + REG.QUEUE_NOTIFY, 4, q), callFd: irq.fd }));
        return;
      }
      // virtio-mmio's interrupt is raised as an edge through an irqfd; the guest reads the status
      // register to see why, as with Firecracker.
      const irq = vm.irqfd(slot.irq);
      const transport = new VirtioMmio(dev, vm.memory, (level) => level && irq(), this.logger);
      this.transports.push(transport);
      vm.mmio.insert(slot.addr, slot.size, transport);
      // Queue notifications skip the exit to JS: KVM signals an eventfd the loop watches.
      dev.queueMaxSizes.forEach((_, q) => vm.ioeventfd(slot.addr + REG.QUEUE_NOTIFY, 4, false, q, () => transport.queueNotify(q)));
    });
  }

  private setupVcpus(): void {
    const { vm, boot } = this;
    const supported = decodeCpuid(vm.supportedCpuid());
    for (let i = 0; i < vm.vcpus; i++) {
      vm.setState(i, 'cpuid', encodeCpuid(vcpuCpuid(supported, i, vm.vcpus)));
      const lapic = vm.state(i, 'lapic');
      setLintDelivery(lapic);
      vm.setState(i, 'lapic', lapic);
    }
    vm.setState(0, 'msrs', encodeMsrs(boot.msrs));
    vm.editSregs(0, (s) => {
      const sr = boot.sregs;
      writeSegment(s, 'cs', sr.cs);
      for (const n of ['ds', 'es', 'fs', 'gs', 'ss'] as const) writeSegment(s, n, sr[n]);
      writeSegment(s, 'tr', sr.tr);
      writeTable(s, 'gdt', sr.gdt);
      writeTable(s, 'idt', sr.idt);
      writeControl(s, 'cr0', sr.cr0);
      writeControl(s, 'cr3', sr.cr3);
      writeControl(s, 'cr4', sr.cr4);
      writeControl(s, 'efer', sr.efer);
    });
    const fpu = vm.state(0, 'fpu');
    fpu.writeUInt16LE(boot.fpu.fcw, FPU_FCW_OFFSET);
    fpu.writeUInt32LE(boot.fpu.mxcsr, FPU_MXCSR_OFFSET);
    vm.setState(0, 'fpu', fpu);
    const r = boot.regs;
    vm.setRegs(0, { rip: r.rip, rsp: r.rsp, rbp: r.rbp, rsi: r.rsi, rbx: r.rbx, rflags: r.rflags });
  }

  private onConsole(bytes: Buffer): void {
    this.opts.onConsole?.(bytes);
    this.console.write(bytes);
  }

  /**
   * The kernel's own last words, matched on whole lines (the UART hands over a byte at a time). Without
   * ACPI a Linux poweroff only halts the CPUs, so its console line is the one sign of it; a guest printing
   * these lines itself can only end its own VM.
   */
  private onConsoleLine(line: string): void {
    const panic = line.indexOf('Kernel panic');
    if (panic >= 0) this.end({ kind: 'panic', line: line.slice(panic).trim() });
    else if (POWER_DOWN.test(line)) this.end({ kind: 'poweroff' });
  }

  /** Runs the guest; resolves with how it ended. */
  start(): Promise<MachineEnd> {
    if (!this.runPromise) {
      this.runPromise = this.vm.run();
      void this.runPromise.then((stops) => {
        if (this.vm.deviceError) this.emit('device-error', this.vm.deviceError.message);
        this.end(machineEndFromStops(stops, this.vm.deviceError?.message));
      });
    }
    return this.wait();
  }

  wait(): Promise<MachineEnd> {
    if (this.ended) return Promise.resolve(this.ended);
    return new Promise((resolve) => this.once('end', resolve));
  }

  private end(how: MachineEnd): void {
    if (this.ended) return;
    this.ended = how;
    this.logger.info({ end: how }, 'native VM ended');
    this.vm.stop();
    this.emit('end', how);
  }

  stop(): void {
    this.end({ kind: 'stopped' });
  }

  /**
   * Where a guest that stopped making progress stands: each vCPU's instruction pointer, interrupt flag and run
   * state (read while the vCPUs are briefly paused), the exit counters, and the device models' interrupt and
   * queue state. For the sandbox log (a boot that timed out, a sandbox that failed, SIGUSR2); the guest runs
   * on afterwards.
   */
  diagnose(): Promise<Record<string, unknown>> {
    // One at a time: a second diagnosis would resume the vCPUs the first one is still reading.
    const next = this.diagnosing.then(() => this.diagnoseNow());
    this.diagnosing = next.catch(() => undefined);
    return next;
  }

  private async diagnoseNow(): Promise<Record<string, unknown>> {
    const vcpus: (DiagnosedVcpu & Record<string, unknown>)[] = [];
    if (!this.ended) {
      // Where each vCPU thread stood before the pause takes them all out of KVM_RUN.
      const before = this.vm.vcpuThreads();
      const kicked = performance.now();
      this.vm.pause();
      // Pausing takes effect when each vCPU thread next leaves KVM_RUN (it is kicked); the exits it may be
      // waiting on are answered by this loop meanwhile. A loaded nested host can take a while to deliver it.
      let after = this.vm.vcpuThreads();
      for (let waited = 0; waited < DIAGNOSE_PAUSE_WAIT_MS && after.some((t) => t.running && !t.parked); waited += 50) {
        await new Promise((r) => setTimeout(r, 50));
        after = this.vm.vcpuThreads();
      }
      const kickedMsAgo = Math.round(performance.now() - kicked);
      let tscKhz = 0;
      for (let i = 0; i < this.vm.vcpus && tscKhz === 0; i++) {
        try {
          tscKhz = this.vm.tscKhz(i);
        } catch {
          // not paused, or an older KVM: deadlines are then given in ticks only
        }
      }
      for (let i = 0; i < this.vm.vcpus; i++) {
        const b = before[i];
        const a = after[i];
        const thread = { inKvmRun: b?.inKvmRun ?? false, kvmRuns: b?.kvmRuns ?? 0, stillInKvmRun: (a?.running ?? false) && !(a?.parked ?? false) && (a?.inKvmRun ?? false), kickedMsAgo };
        try {
          const r = this.vm.regs(i);
          const mp = this.vm.state(i, 'mpstate').readUInt32LE(0);
          const [tsc, deadline] = this.vm.msrs(i, [MSR_IA32_TSC, MSR_IA32_TSC_DEADLINE]);
          vcpus.push({
            vcpu: i,
            rip: `0x${r.rip.toString(16)}`,
            interruptsOn: (r.rflags & 0x200n) !== 0n,
            mpState: MP_STATES[mp] ?? mp,
            lapic: summarizeLapic(this.vm.state(i, 'lapic')),
            tscDeadline: deadlineState(tsc ?? 0n, deadline ?? 0n, tscKhz),
            thread,
          });
        } catch (err) {
          vcpus.push({ vcpu: i, error: errorMessage(err), thread });
        }
      }
      this.vm.resume();
    }
    const { byAddress, ...exits } = this.vm.exitStats();
    return { ended: this.ended?.kind ?? null, vcpus, stoppedVcpus: this.vm.stoppedVcpus(), stuckInKvm: stuckInKvm(vcpus), exits: { ...exits, top: byAddress.slice(0, 8) }, serial: this.serial?.debugState(), virtio: this.transports.map((t) => t.debugState()) };
  }

  /** Stops the guest if needed and releases everything: threads, fds, sockets. */
  async destroy(): Promise<void> {
    this.end({ kind: 'stopped' });
    if (this.runPromise) await this.runPromise;
    this.vm.destroy();
    for (const b of this.backends) b.close();
    for (const s of this.sockets) s.close();
    for (const n of this.nets) n.close();
    this.console.close('VM destroyed');
  }
}

/** Opens and parses the kernel's ELF headers: a missing or non-ELF kernel fails before any VM exists. */
function checkKernel(kernel: string, memBytes: number): void {
  if (!existsSync(kernel)) throw new VrunError(`guest kernel ${kernel} does not exist`);
  const src = openFileSource(kernel);
  try {
    parseElfKernel(src, lowRamEnd(memBytes));
  } finally {
    src.close();
  }
}

export function createVm(opts: CreateVmOptions): Promise<Machine> {
  return Machine.create(opts);
}


export function decodeCpuid(buf: Buffer): CpuidEntry[] {
  const out: CpuidEntry[] = [];
  for (let o = 0; o + CPUID_ENTRY <= buf.length; o += CPUID_ENTRY) {
    out.push({
      function: buf.readUInt32LE(o),
      index: buf.readUInt32LE(o + 4),
      flags: buf.readUInt32LE(o + 8),
      eax: buf.readUInt32LE(o + 12),
      ebx: buf.readUInt32LE(o + 16),
      ecx: buf.readUInt32LE(o + 20),
      edx: buf.readUInt32LE(o + 24),
    });
  }
  return out;
}

export function encodeCpuid(entries: CpuidEntry[]): Buffer {
  const buf = Buffer.alloc(CPUID_ENTRY * entries.length);
  entries.forEach((e, i) => {
    const o = i * CPUID_ENTRY;
    buf.writeUInt32LE(e.function >>> 0, o);
    buf.writeUInt32LE(e.index >>> 0, o + 4);
    buf.writeUInt32LE(e.flags >>> 0, o + 8);
    buf.writeUInt32LE(e.eax >>> 0, o + 12);
    buf.writeUInt32LE(e.ebx >>> 0, o + 16);
    buf.writeUInt32LE(e.ecx >>> 0, o + 20);
    buf.writeUInt32LE(e.edx >>> 0, o + 24);
  });
  return buf;
}
