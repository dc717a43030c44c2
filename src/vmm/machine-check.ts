import { spawn } from 'node:child_process';
import net from 'node:net';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorMessage } from '../common/errors.js';
import { loadGuestImage } from '../guest-image/image.js';
import { createVm, type MachineEnd } from './machine.js';

/**
 * Boots the guest image on the native VMM and reports what happened as one `VRUN-MACHINE {...}` line:
 * time to the readiness line, the guest's self-check lines, a byte stream echoed through the
 * `vrun.agent` port, and how the VM ended. Runs where /dev/kvm can boot Linux (the KVM lab here);
 * the slow test asserts on the report.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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

async function startVirtiofsd(shareDir: string, socket: string): Promise<() => void> {
  const p = spawn('/usr/lib/qemu/virtiofsd', [`--socket-path=${socket}`, '-o', `source=${shareDir}`, '-o', 'sandbox=chroot', '-o', 'cache=auto'], {
    stdio: 'ignore',
  });
  for (let i = 0; i < 200 && !existsSync(socket); i++) await sleep(25);
  return () => p.kill('SIGKILL');
}

export async function machineCheck(opts: { vcpus: number; memoryMiB: number; command: string }): Promise<Record<string, unknown>> {
  const image = await loadGuestImage('guest-image');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vrun-machine-'));
  const socket = path.join(dir, 'agent.sock');
  const shareDir = path.join(dir, 'share');
  await mkdir(shareDir);
  await writeFile(path.join(shareDir, 'hello.txt'), 'VRUN-FS-CONTENT served-by-virtiofsd\n');
  const fsSocket = path.join(dir, 'virtiofsd.sock');
  const stopVirtiofsd = await startVirtiofsd(shareDir, fsSocket);
  const started = Date.now();
  const m = await createVm({
    shares: [{ tag: 'vrunshare', socket: fsSocket }],
    kernel: image.kernel,
    initrd: image.initrd,
    cmdline: `vrun.check=1 vrun.cmd=${opts.command.replace(/ /g, '%20')}`,
    vcpus: opts.vcpus,
    memoryMiB: opts.memoryMiB,
    ports: [{ name: 'vrun.agent', socket }],
    consoleLog: path.join(dir, 'console.log'),
  });
  const report: Record<string, unknown> = {};
  const lines: string[] = [];
  m.console.onLine((l) => {
    if (l.startsWith('VRUN-')) lines.push(l);
  });
  try {
    const ended = m.start();
    const ready = await Promise.race([
      m.console.waitFor(/VRUN-READY (\d+\.\d+)/, 240_000, 'VRUN-READY'),
      ended.then((e: MachineEnd) => {
        throw new Error(`VM ended before readiness: ${JSON.stringify(e)}`);
      }),
    ]);
    report.readyMs = Date.now() - started;
    report.guestUptime = Number(ready[1]);
    report.echo = await echoThroughPort(socket, 'hello', 60_000);
    const timer = setTimeout(() => m.stop(), 120_000);
    report.end = await ended;
    clearTimeout(timer);
  } catch (err) {
    report.error = errorMessage(err);
  } finally {
    report.lines = lines;
    report.consoleTail = m.console.recent(40);
    await m.destroy();
    stopVirtiofsd();
    await rm(dir, { recursive: true, force: true });
  }
  return report;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  // The guest mounts the virtio-fs share and prints a file from it, then reads 5 bytes from the agent
  // port and writes them back upper-cased.
  const command =
    process.argv[2] ??
    'mkdir -p /mnt/s && mount -t virtiofs vrunshare /mnt/s && cat /mnt/s/hello.txt && head -c 5 /dev/vport0p0 | tr a-z A-Z > /dev/vport0p0';
  machineCheck({ vcpus: 2, memoryMiB: 512, command }).then(
    (r) => {
      process.stdout.write(`VRUN-MACHINE ${JSON.stringify(r)}\n`);
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`machine-check: ${errorMessage(err)}\n`);
      process.exit(1);
    },
  );
}
