import { readdirSync } from 'node:fs';
import { setImmediate as tick } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { errorMessage } from '../../common/errors.js';
import type { BusDevice } from '../devices/bus.js';
import { attachSilentPorts } from '../devices/legacy-ports.js';
import { Vm, type VcpuStop } from '../kvm/vm.js';
import { Code, enterLongMode, enterRealMode } from './payloads.js';

/**
 * Runs hand-assembled payloads on /dev/kvm and reports what the device models observed, one JSON
 * line per scenario (`VRUN-SELFCHECK {...}`). It runs wherever /dev/kvm is usable — directly, or
 * inside the KVM lab — and the payload tests assert on its report. It only observes; it does not
 * judge, so the expectations stay in the tests.
 */

export const PORTS = 0x10;
export const DONE = 0x1f;
export const MMIO_REAL = 0x20000;
export const MMIO_LONG = 0xd000_0000;

export interface Access {
  op: 'r' | 'w';
  offset: number;
  size: number;
  value: number;
}

/** Records every access; reads answer `answer(offset, size)`. */
export class RecordingDevice implements BusDevice {
  readonly log: Access[] = [];
  constructor(
    readonly name: string,
    private readonly answer: (offset: number, size: number) => number,
    private readonly onWrite: (offset: number, value: number) => void = () => {},
  ) {}
  read(offset: number, size: number): number {
    const value = this.answer(offset, size);
    this.log.push({ op: 'r', offset, size, value });
    return value;
  }
  write(offset: number, size: number, value: number): void {
    this.log.push({ op: 'w', offset, size, value });
    this.onWrite(offset, value);
  }
}

function rig(memBytes: number, mmioBase: number) {
  const vm = new Vm({ memBytes, vcpus: 1 });
  const ports = new RecordingDevice('ports', (_off, size) => (size === 1 ? 0x0d : size === 2 ? 0xf00d : 0xcafe_f00d), (off) => {
    if (off === DONE - PORTS) vm.stop();
  });
  const mmio = new RecordingDevice('mmio', (off) => (off === 0x18 ? 0x1122_3344 : off === 0x1c ? 0x5566_7788 : 0x8bad_f00d));
  vm.pio.insert(PORTS, 0x10, ports);
  vm.mmio.insert(mmioBase, 0x100, mmio);
  return { vm, ports, mmio };
}

async function runBounded(vm: Vm, ms = 30_000): Promise<VcpuStop[]> {
  const timer = setTimeout(() => vm.stop(), ms);
  try {
    return await vm.run();
  } finally {
    clearTimeout(timer);
  }
}

const count = (dir: string) => readdirSync(dir).length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const scenarios: Record<string, () => Promise<Record<string, unknown>>> = {
  async realMode() {
    const { vm, ports, mmio } = rig(0x10000, MMIO_REAL);
    try {
      new Code()
        .emit(0xb0, 0x5a, 0xe6, 0x10) // mov al,0x5a; out 0x10,al
        .emit(0xb8, 0x34, 0x12, 0xe7, 0x12) // mov ax,0x1234; out 0x12,ax
        .emit(0x66, 0xb8, 0xef, 0xbe, 0xad, 0xde, 0x66, 0xe7, 0x14) // mov eax,0xdeadbeef; out 0x14,eax
        .emit(0xe5, 0x18, 0xe7, 0x16) // in ax,0x18; out 0x16,ax
        .emit(0xbb, 0x00, 0x20, 0x8e, 0xc3) // mov bx,0x2000; mov es,bx
        .emit(0x26, 0xc6, 0x06, 0x00, 0x00, 0x11) // mov byte es:[0],0x11
        .emit(0x26, 0xc7, 0x06, 0x02, 0x00, 0x33, 0x22) // mov word es:[2],0x2233
        .emit(0x26, 0x66, 0xc7, 0x06, 0x04, 0x00, 0x77, 0x66, 0x55, 0x44) // mov dword es:[4],0x44556677
        .emit(0x26, 0x66, 0xa1, 0x10, 0x00) // mov eax,es:[0x10]
        .emit(0x66, 0xe7, 0x14) // out 0x14,eax
        .emit(0xe6, DONE, 0xf4, 0xeb, 0xfd) // out DONE,al; hlt; jmp $-3
        .load(vm);
      enterRealMode(vm);
      const stops = await runBounded(vm);
      return { stops, ports: ports.log, mmio: mmio.log, deviceError: vm.deviceError?.message };
    } finally {
      vm.destroy();
    }
  },

  async longMode() {
    const { vm, ports, mmio } = rig(2 * 1024 * 1024, MMIO_LONG);
    try {
      new Code()
        .emit(0xb0, 0x5a, 0xe6, 0x10) // mov al,0x5a; out 0x10,al
        .emit(0x66, 0xb8, 0x34, 0x12, 0x66, 0xe7, 0x12) // mov ax,0x1234; out 0x12,ax
        .emit(0xb8, 0xef, 0xbe, 0xad, 0xde, 0xe7, 0x14) // mov eax,0xdeadbeef; out 0x14,eax
        .emit(0xe5, 0x18, 0xe7, 0x14) // in eax,0x18; out 0x14,eax
        .emit(0xbb, 0x00, 0x00, 0x00, 0xd0) // mov ebx,0xd0000000
        .emit(0xc6, 0x03, 0x11) // mov byte [rbx],0x11
        .emit(0x66, 0xc7, 0x43, 0x02, 0x33, 0x22) // mov word [rbx+2],0x2233
        .emit(0xc7, 0x43, 0x04, 0x77, 0x66, 0x55, 0x44) // mov dword [rbx+4],0x44556677
        .emit(0x48, 0xb8, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88) // mov rax,0x8877665544332211
        .emit(0x48, 0x89, 0x43, 0x08) // mov [rbx+8],rax
        .emit(0x8b, 0x43, 0x10, 0xe7, 0x14) // mov eax,[rbx+0x10]; out 0x14,eax
        .emit(0x48, 0x8b, 0x43, 0x18) // mov rax,[rbx+0x18]
        .emit(0xe7, 0x14, 0x48, 0xc1, 0xe8, 0x20, 0xe7, 0x14) // out 0x14,eax; shr rax,32; out 0x14,eax
        .emit(0xe6, DONE, 0xf4, 0xeb, 0xfd)
        .load(vm);
      enterLongMode(vm);
      const stops = await runBounded(vm);
      return { stops, ports: ports.log, mmio: mmio.log, deviceError: vm.deviceError?.message };
    } finally {
      vm.destroy();
    }
  },

  async tripleFault() {
    // vCPU 0 loads an empty IDT and takes int3: #GP, #DF, triple fault (KVM_EXIT_SHUTDOWN). vCPU 1 spins on
    // `jmp $` for ever: the machine must end at once, not when something else stops it.
    const vm = new Vm({ memBytes: 0x10000, vcpus: 2 });
    try {
      new Code()
        .emit(0x0f, 0x01, 0x1e, 0x00, 0x30) // lidt [0x3000] (six zero bytes: limit 0, base 0)
        .emit(0xcc) // int3
        .load(vm);
      vm.ram[0x2000] = 0xeb; // jmp $
      vm.ram[0x2001] = 0xfe;
      enterRealMode(vm, 0);
      enterRealMode(vm, 1);
      vm.setRegs(1, { rip: 0x2000, rflags: 2, rsp: 0x7000 });
      const started = performance.now();
      const stops = await runBounded(vm, 20_000);
      return { stops: [...stops].sort((a, b) => a.vcpu - b.vcpu), ms: Math.round(performance.now() - started) };
    } finally {
      vm.destroy();
    }
  },

  async irqfd() {
    const vm = new Vm({ memBytes: 0x10000, vcpus: 1 });
    try {
      const gsi = 5;
      const raise = vm.irqfd(gsi);
      const handled: number[] = [];
      vm.pio.insert(
        PORTS,
        2,
        new RecordingDevice('irq', () => 0, (off, value) => {
          if (off === 0) raise(); // the guest is ready: PIC programmed, interrupts about to be enabled
          else {
            handled.push(value); // the guest's interrupt handler ran
            vm.stop();
          }
        }),
      );
      const vector = 0x20 + gsi;
      const code = new Code().emit(0xfa).emit(0xc7, 0x06, (vector * 4) & 0xff, (vector * 4) >> 8, 0, 0); // cli; mov word [ivt], handler
      const handlerSlot = code.here - 2;
      code
        .emit(0xc7, 0x06, (vector * 4 + 2) & 0xff, (vector * 4 + 2) >> 8, 0x00, 0x00) // mov word [ivt+2], 0
        .emit(0xb0, 0x11, 0xe6, 0x20) // ICW1: edge, cascade, ICW4 follows
        .emit(0xb0, 0x20, 0xe6, 0x21) // ICW2: vectors from 0x20
        .emit(0xb0, 0x04, 0xe6, 0x21) // ICW3: slave on IRQ2
        .emit(0xb0, 0x01, 0xe6, 0x21) // ICW4: 8086 mode
        .emit(0xb0, 0x00, 0xe6, 0x21) // OCW1: unmask everything
        .emit(0xb0, 0x01, 0xe6, PORTS) // ready
        .emit(0xfb, 0xf4, 0xeb, 0xfd); // sti; hlt; jmp $-3
      code.patch16(handlerSlot, code.here);
      code
        .emit(0xb0, 0x42, 0xe6, PORTS + 1) // out PORTS+1, 0x42
        .emit(0xb0, 0x20, 0xe6, 0x20) // EOI
        .emit(0xcf) // iret
        .load(vm);
      enterRealMode(vm);
      const stops = await runBounded(vm);
      return { stops, handled };
    } finally {
      vm.destroy();
    }
  },

  async pauseResume() {
    const { vm, ports } = rig(0x10000, MMIO_REAL);
    try {
      // xor ax,ax; inc ax; out 0x10,ax; jmp back to the inc: a counter written forever.
      new Code().emit(0x31, 0xc0, 0x40, 0xe7, 0x10, 0xeb, 0xfb).load(vm);
      enterRealMode(vm);
      const done = vm.run();
      while (ports.log.length < 100) await tick();
      let runningStateError = '';
      try {
        vm.regs(0);
      } catch (err) {
        runningStateError = errorMessage(err);
      }
      vm.pause();
      await sleep(50);
      const frozenAt = ports.log.length;
      await sleep(200);
      const afterPause = ports.log.length;
      const raxWhilePaused = Number(vm.regs(0).rax & 0xffffn);
      const lastWritten = ports.log.at(-1)?.value;
      vm.resume();
      while (ports.log.length < afterPause + 100) await tick();
      vm.stop();
      const stops = await done;
      const values = ports.log.map((a) => a.value);
      const sequential = values.every((v, i) => v === ((i + 1) & 0xffff));
      return { stops, runningStateError, frozenAt, afterPause, raxWhilePaused, lastWritten, total: values.length, sequential };
    } finally {
      vm.destroy();
    }
  },

  async ioeventfd() {
    const { vm, ports } = rig(0x10000, MMIO_REAL);
    try {
      let notified = 0;
      vm.ioeventfd(0x30, 2, true, 7, () => notified++);
      // out 0x30 with 7 (matches: eventfd, no exit), then 8 (no match: an ordinary exit), then done.
      new Code().emit(0xb8, 0x07, 0x00, 0xe7, 0x30, 0xb8, 0x08, 0x00, 0xe7, 0x30, 0xe6, DONE, 0xf4).load(vm);
      enterRealMode(vm);
      const stops = await runBounded(vm);
      for (let i = 0; i < 1000 && notified === 0; i++) await tick();
      return { stops, notified, unhandled: vm.pio.unhandled, ports: ports.log };
    } finally {
      vm.destroy();
    }
  },

  async nativePorts() {
    const { vm, ports } = rig(0x10000, MMIO_REAL);
    try {
      attachSilentPorts(vm);
      new Code()
        .emit(0xb0, 0x0a, 0xe6, 0x70) // mov al,0x0a; out 0x70,al (CMOS index)
        .emit(0xe4, 0x71, 0xe6, PORTS) // in al,0x71; out PORTS,al
        .emit(0xe6, 0x80) // out 0x80,al
        .emit(0xe5, 0x70, 0xe7, PORTS + 2) // in ax,0x70 (both CMOS ports); out PORTS+2,ax
        .emit(0xe6, DONE, 0xf4, 0xeb, 0xfd)
        .load(vm);
      enterRealMode(vm);
      const stops = await runBounded(vm);
      const { pioToJs, pioNative } = vm.exitStats();
      return { stops, ports: ports.log, pioToJs, pioNative };
    } finally {
      vm.destroy();
    }
  },

  async deviceError() {
    const vm = new Vm({ memBytes: 0x10000, vcpus: 1 });
    try {
      vm.pio.insert(PORTS, 1, {
        name: 'bad',
        read: () => 0,
        write: () => {
          throw new Error('device exploded');
        },
      });
      new Code().emit(0xe6, PORTS, 0xf4, 0xeb, 0xfd).load(vm);
      enterRealMode(vm);
      const stops = await runBounded(vm);
      return { stops, deviceError: vm.deviceError?.message };
    } finally {
      vm.destroy();
    }
  },

  async badArguments() {
    const attempt = (f: () => Vm) => {
      try {
        f().destroy();
        return 'no error';
      } catch (err) {
        return errorMessage(err);
      }
    };
    return {
      oddMemory: attempt(() => new Vm({ memBytes: 1000, vcpus: 1 })),
      noVcpus: attempt(() => new Vm({ memBytes: 0x10000, vcpus: 0 })),
      noDevice: attempt(() => new Vm({ memBytes: 0x10000, vcpus: 1, devicePath: '/nonexistent/kvm' })),
      tooManyVcpus: attempt(() => new Vm({ memBytes: 0x10000, vcpus: 100_000 })),
      regionPastRam: attempt(() => new Vm({ memBytes: 0x10000, vcpus: 1, regions: [{ guestAddr: 0, size: 0x20000, fileOffset: 0 }] })),
    };
  },

  async cycles() {
    const cycle = async () => {
      const vm = new Vm({ memBytes: 0x10000, vcpus: 2 });
      vm.pio.insert(PORTS, 0x10, new RecordingDevice('p', () => 0, (off) => off === DONE - PORTS && vm.stop()));
      vm.irqfd(5);
      vm.ioeventfd(0x40, 1, true, undefined, () => {});
      new Code().emit(0xe6, 0x40, 0xe6, DONE, 0xf4, 0xeb, 0xfd).load(vm);
      enterRealMode(vm, 0);
      enterRealMode(vm, 1);
      const stops = await runBounded(vm);
      vm.destroy();
      await tick();
      return stops;
    };
    await cycle();
    await sleep(100);
    const before = { fds: count('/proc/self/fd'), threads: count('/proc/self/task') };
    const reasons = new Set<string>();
    for (let i = 0; i < 50; i++) for (const s of await cycle()) reasons.add(s.reason);
    await sleep(100);
    const after = { fds: count('/proc/self/fd'), threads: count('/proc/self/task') };
    return { cycles: 50, before, after, reasons: [...reasons] };
  },
};

export async function runSelfCheck(names: string[], out: (line: string) => void): Promise<void> {
  for (const name of names.length > 0 ? names : Object.keys(scenarios)) {
    const scenario = scenarios[name];
    if (!scenario) {
      out(`VRUN-SELFCHECK ${JSON.stringify({ name, error: 'no such scenario' })}`);
      continue;
    }
    const started = Date.now();
    try {
      const result = await scenario();
      out(`VRUN-SELFCHECK ${JSON.stringify({ name, ms: Date.now() - started, ...result })}`);
    } catch (err) {
      out(`VRUN-SELFCHECK ${JSON.stringify({ name, ms: Date.now() - started, error: errorMessage(err) })}`);
    }
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runSelfCheck(process.argv.slice(2), (l) => process.stdout.write(`${l}\n`)).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`${errorMessage(err)}\n`);
      process.exit(1);
    },
  );
}
