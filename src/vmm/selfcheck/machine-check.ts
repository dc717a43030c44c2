import net from 'node:net';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorMessage } from '../../common/errors.js';
import { READY_PATTERN } from '../../guest-image/guest-contract.js';
import { loadGuestImage } from '../../guest-image/image.js';
import { createVm, type Machine, type MachineEnd } from '../machine.js';
import { Virtiofsd } from '../vhost-user/virtiofsd.js';

/**
 * Boots the guest image on the native VMM and reports what happened as one `VRUN-MACHINE {...}` line:
 * time to the readiness line, the guest's self-check lines, a byte stream echoed through the
 * `vrun.agent` port, the seccomp state of the vCPU threads while the guest runs, and how the VM ended. Runs where /dev/kvm can boot Linux (the KVM lab here);
 * the slow test asserts on the report.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Guest shell that sets $d to the vrun.agent port's device: ports are found by name, not by number. */
export const FIND_AGENT_PORT =
  'for p in $(ls /sys/class/virtio-ports); do grep -qx vrun.agent /sys/class/virtio-ports/$p/name && d=/dev/$p; done; ';

async function echoThroughPort(socketPath: string, payload: string, timeoutMs: number): Promise<string> {
  const s = net.connect(socketPath);
  let got = '';
  const deadline = Date.now() + timeoutMs;
  s.on('data', (d: Buffer) => (got += d.toString()));
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  s.write(payload);
  while (got.length < payload.length && Date.now() < deadline) await sleep(20);
  s.destroy();
  return got;
}

/** A thread of this process as /proc shows it: its name and its status' Seccomp fields. */
export interface ThreadSeccomp {
  tid: number;
  name: string;
  /** 0: none, 1: strict, 2: filter. */
  seccomp: number;
  /** How many filters apply to it (Linux 5.9+; undefined before). */
  filters?: number;
}

async function threadSeccomp(tid: string): Promise<ThreadSeccomp | undefined> {
  try {
    const dir = `/proc/self/task/${tid}`;
    const [name, status] = await Promise.all([readFile(`${dir}/comm`, 'utf8'), readFile(`${dir}/status`, 'utf8')]);
    const field = (f: string): number | undefined => {
      const m = new RegExp(`^${f}:\\s*(\\d+)$`, 'm').exec(status);
      return m ? Number(m[1]) : undefined;
    };
    const filters = field('Seccomp_filters');
    return { tid: Number(tid), name: name.trim(), seccomp: field('Seccomp') ?? -1, ...(filters === undefined ? {} : { filters }) };
  } catch {
    return undefined; // the thread ended between readdir and the reads
  }
}

/** This process' main thread (Node's) and its vCPU threads (named "vcpu N" by native/src/vcpu_seccomp.cc). */
async function seccompOfThreads(): Promise<{ main?: ThreadSeccomp; vcpus: ThreadSeccomp[] }> {
  const threads = (await Promise.all((await readdir('/proc/self/task')).map(threadSeccomp))).filter((t) => t !== undefined);
  return { main: threads.find((t) => t.tid === process.pid), vcpus: threads.filter((t) => /^vcpu \d+$/.test(t.name)) };
}

export interface MachineCheckOptions {
  vcpus: number;
  memoryMiB: number;
  /** Shell command the guest init runs instead of the agent; omitted for a boot without an initrd. */
  command?: string;
  /** Boot without the initrd: the kernel finds no root and panics, which is what the panic check wants. */
  noInitrd?: boolean;
  /** Bytes to send through the vrun.agent port after readiness; the guest command is expected to echo them back. */
  echo?: string;
  timeoutMs?: number;
}

export async function machineCheck(opts: MachineCheckOptions): Promise<Record<string, unknown>> {
  const image = await loadGuestImage('guest-image');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vrun-machine-'));
  const socket = path.join(dir, 'agent.sock');
  const shareDir = path.join(dir, 'share');
  await mkdir(shareDir);
  await writeFile(path.join(shareDir, 'hello.txt'), 'VRUN-FS-CONTENT served-by-virtiofsd\n');
  const fsSocket = path.join(dir, 'virtiofsd.sock');
  const timeoutMs = opts.timeoutMs ?? 300_000;
  const report: Record<string, unknown> = { vcpus: opts.vcpus };
  const lines: string[] = [];
  let m: Machine | undefined;
  let virtiofsd: Virtiofsd | undefined;
  let timer: NodeJS.Timeout | undefined;
  const started = Date.now();
  try {
    virtiofsd = await Virtiofsd.start({ socketPath: fsSocket, sharedDir: shareDir });
    report.virtiofsd = { uid: virtiofsd.hostUid, unmapped: virtiofsd.unmapped };
    m = await createVm({
      shares: [{ tag: 'vrunshare', socket: fsSocket }],
      kernel: image.kernel,
      ...(opts.noInitrd ? {} : { initrd: image.initrd }),
      // quiet: every console byte is a UART exit, and under nested virtualization those dominate boot time.
      cmdline: ['quiet', 'vrun.check=1', opts.command ? `vrun.cmd=${opts.command.replace(/ /g, '%20')}` : ''].filter(Boolean).join(' '),
      vcpus: opts.vcpus,
      memoryMiB: opts.memoryMiB,
      ports: [{ name: 'vrun.agent', socket }],
      consoleLog: path.join(dir, 'console.log'),
    });
    const vm = m;
    vm.console.onLine((l) => {
      if (l.startsWith('VRUN-')) lines.push(l);
    });
    const ended = vm.start();
    timer = setTimeout(() => vm.stop(), timeoutMs);
    if (!opts.noInitrd) {
      const ready = await Promise.race([
        vm.console.waitFor(READY_PATTERN, timeoutMs, 'VRUN-READY'),
        ended.then((e: MachineEnd) => {
          throw new Error(`VM ended before readiness: ${JSON.stringify(e)}`);
        }),
      ]);
      report.readyMs = Date.now() - started;
      report.guestUptime = Number(ready[1]);
      report.threads = await seccompOfThreads();
      if (opts.echo) report.echo = await echoThroughPort(socket, opts.echo, 60_000);
    }
    report.end = await ended;
    report.endMs = Date.now() - started;
  } catch (err) {
    report.error = errorMessage(err);
  } finally {
    clearTimeout(timer);
    report.lines = lines;
    report.consoleTail = m?.console.recent(40) ?? '';
    await m?.destroy();
    await virtiofsd?.stop();
    await rm(dir, { recursive: true, force: true });
  }
  return report;
}

/**
 * The checks the slow test asserts on: a full boot (virtio-fs read, a byte round trip through the
 * vrun.agent port, then poweroff with the command's status printed first) and a boot that panics.
 */
export const CHECKS: Record<string, (vcpus: number) => MachineCheckOptions> = {
  boot: (vcpus) => ({
    vcpus,
    memoryMiB: 512,
    echo: 'hello',
    // The port is found by name; it is opened once, read and written (a virtio port admits one opener).
    command:
      'set -o pipefail; mkdir -p /mnt/s && mount -t virtiofs vrunshare /mnt/s && cat /mnt/s/hello.txt && ' +
      FIND_AGENT_PORT +
      'exec 3<>$d && head -c 5 <&3 | tr a-z A-Z >&3; echo VRUN-CMD-STATUS=$?; poweroff -f',
  }),
  panic: (vcpus) => ({ vcpus, memoryMiB: 256, noInitrd: true, timeoutMs: 120_000 }),
};

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  // machine-check.js [--vcpus N] [check...]: one VRUN-MACHINE line per check.
  const args = process.argv.slice(2);
  const at = args.indexOf('--vcpus');
  const vcpus = at >= 0 ? Number(args.splice(at, 2)[1]) : 2;
  const names = args.length > 0 ? args : Object.keys(CHECKS);
  (async () => {
    for (const name of names) {
      const check = CHECKS[name];
      const r = check ? await machineCheck(check(vcpus)) : { error: `no such check ${name}` };
      process.stdout.write(`VRUN-MACHINE ${JSON.stringify({ name, ...r })}\n`);
    }
  })().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`machine-check: ${errorMessage(err)}\n`);
      process.exit(1);
    },
  );
}
