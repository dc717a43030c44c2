import fs from 'node:fs';
import { errorKind, errorMessage } from '../../common/errors.js';
import { rootLogger } from '../../common/log.js';
import { confineVmmProcess } from '../kvm/process-seccomp.js';
import { createVm, type Machine } from '../machine.js';
import { parseLaunchSpec, MAX_LAUNCH_SPEC_BYTES, type VmmLaunchSpec } from './launch-spec.js';
import { encodeLine, EVENTS_FD, lineSplitter, MAX_COMMAND_LINE, parseCommand, type VmmEvent } from './messages.js';

/**
 * The native VMM's own process (bundled as dist/vmm/vmm.cjs): `node vmm.cjs SPEC_FILE`, started by
 * src/vmm/native-backend.ts through vrun-jailer, as the pod's jail uid, without root. It reads the launch spec,
 * makes the machine, runs the guest and ends when the guest does:
 * - stdout: the serial console's bytes; stderr: its log (JSON lines);
 * - fd 3: events (messages.ts), the last one `end` with how the guest ended, then the process exits 0;
 * - stdin: commands (stop, diagnose). Its end means the sandbox is gone: the VM stops, as it did when the VM
 *   ran inside the sandbox process. SIGTERM stops the VM too.
 * A spec or a machine that cannot be made is an `end` of kind error and exit status 2 (spec) or 1.
 */

const log = rootLogger();

function emit(event: VmmEvent): void {
  const line = Buffer.from(encodeLine(event));
  for (let off = 0; off < line.length; ) {
    try {
      off += fs.writeSync(EVENTS_FD, line, off);
    } catch (err) {
      // The sandbox reads its end as it comes; EAGAIN is a moment's full pipe, anything else a sandbox gone.
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return;
    }
  }
}

function fail(message: string, status: number): never {
  process.stderr.write(`vrun-vmm: ${message}\n`);
  emit({ event: 'end', end: { kind: 'error', message } });
  process.exit(status);
}

function readSpec(file: string | undefined): VmmLaunchSpec {
  if (!file) fail('usage: vmm.cjs SPEC_FILE', 2);
  let text: string;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(MAX_LAUNCH_SPEC_BYTES + 1);
      text = buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, 0)).toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    fail(`cannot read the launch spec ${file}: ${errorMessage(err)}`, 2);
  }
  try {
    return parseLaunchSpec(text);
  } catch (err) {
    fail(errorMessage(err), errorKind(err) === 'invalid' ? 2 : 1);
  }
}

function makeMachine(spec: VmmLaunchSpec): Promise<Machine> {
  return createVm({
    kernel: spec.kernel,
    initrd: spec.initrd,
    cmdline: spec.cmdline,
    vcpus: spec.vcpus,
    memoryMiB: spec.memoryMiB,
    ports: [{ name: 'vrun.agent', socket: spec.agentSocket }],
    shares: spec.shares,
    nets: spec.nets.map((n) => ({ tapName: n.tap, tapFd: n.fd, mac: n.mac, mtu: n.mtu })),
    freePageReporting: spec.freePageReporting,
    userlandPmem: spec.userlandPmem,
    // The console's bytes go to the sandbox, which logs them (its own cap) and watches the lines.
    onConsole: (bytes) => process.stdout.write(bytes),
    logger: log,
  });
}

/** Commands from the sandbox; their end (the sandbox gone) stops the VM. */
function listen(machine: Machine): void {
  process.stdin.on(
    'data',
    lineSplitter(MAX_COMMAND_LINE, (line) => {
      const c = parseCommand(line);
      if (!c) {
        log.warn({ line: line.slice(0, 200) }, 'unknown command from the sandbox');
        return;
      }
      if (c.cmd === 'stop') machine.stop();
      else void machine.diagnose().then((state) => emit({ event: 'diagnose', id: c.id, state }), (err: unknown) => emit({ event: 'diagnose', id: c.id, state: { error: errorMessage(err) } }));
    }),
  );
  process.stdin.on('end', () => machine.stop());
  process.stdin.on('error', () => machine.stop());
  process.on('SIGTERM', () => machine.stop());
}

async function main(): Promise<void> {
  const spec = readSpec(process.argv[2]);
  let machine: Machine;
  try {
    machine = await makeMachine(spec);
  } catch (err) {
    fail(errorMessage(err), 1);
  }
  machine.on('device-error', (message) => emit({ event: 'device-error', message }));
  listen(machine);
  // Everything the VMM opens is open now (KVM, guest RAM, the sockets, the taps): the process-wide seccomp floor
  // goes on before the first guest instruction runs, and before the vCPU threads exist (each then adds its own
  // allow-list on top; TSYNC would refuse threads that already have a filter of their own).
  try {
    confineVmmProcess();
  } catch (err) {
    fail(errorMessage(err), 1);
  }
  const ended = machine.start();
  emit({ event: 'started' });
  const end = await ended;
  await machine.destroy().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'releasing the native VM failed'));
  emit({ event: 'end', end });
  // stdout is a pipe (synchronous on Linux): the console is out before the exit.
  process.exit(0);
}

void main().catch((err: unknown) => fail(`internal error: ${errorMessage(err)}`, 1));
