import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../../src/common/log.js';
import { BASE_CMDLINE, READY_PATTERN } from '../../src/guest-image/guest-contract.js';
import { loadGuestImage } from '../../src/guest-image/image.js';
import type { Accel, QemuSpec } from '../../src/vmm/qemu/command.js';
import { QemuVm } from '../../src/vmm/qemu/machine.js';

export interface BootedGuest {
  vm: QemuVm;
  /** Wall time from spawning QEMU to the readiness line. */
  readyMs: number;
  /** The guest's own uptime when it printed the readiness line. */
  guestUptimeS: number;
  workDir: string;
  /** Stops the VM if it still runs and removes the work directory unless `keep`. */
  dispose(opts?: { keep?: boolean }): Promise<void>;
}

/**
 * Boots the built guest image under QEMU and waits for the init's readiness line, for the tests that talk to
 * a guest directly; the console log stays in the work directory for failures.
 */
export async function bootGuestImage(opts: {
  accel?: Accel;
  cmdlineExtra?: string;
  vcpus?: number;
  memoryMiB?: number;
  timeoutMs?: number;
  ports?: QemuSpec['ports'];
  shares?: QemuSpec['shares'];
  workDir?: string;
  logger?: Logger;
  kind?: 'guest-image' | 'lab-image';
}): Promise<BootedGuest> {
  const image = await loadGuestImage(opts.kind ?? 'guest-image');
  const workDir = opts.workDir ?? (await mkdtemp(path.join(os.tmpdir(), 'vrun-guest-')));
  const started = Date.now();
  const vm = QemuVm.start(
    {
      kernel: image.kernel,
      initrd: image.initrd,
      cmdline: `${BASE_CMDLINE}${opts.cmdlineExtra ? ` ${opts.cmdlineExtra}` : ''}`,
      vcpus: opts.vcpus ?? 2,
      memoryMiB: opts.memoryMiB ?? 1024,
      accel: opts.accel ?? 'tcg',
      ports: opts.ports,
      shares: opts.shares,
      qmpSocket: path.join(workDir, 'qmp.sock'),
    },
    { consoleLog: path.join(workDir, 'console.log'), logger: opts.logger },
  );
  const dispose = async (d: { keep?: boolean } = {}) => {
    await vm.kill();
    if (!d.keep) await rm(workDir, { recursive: true, force: true });
  };
  try {
    const m = await vm.console.waitFor(READY_PATTERN, opts.timeoutMs ?? 120_000, 'VRUN-READY');
    return { vm, readyMs: Date.now() - started, guestUptimeS: Number(m[1]), workDir, dispose };
  } catch (err) {
    await vm.kill();
    throw err;
  }
}
