import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { VrunError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { loadGuestImage } from '../guest-image/image.js';
import { BASE_CMDLINE } from '../guest-image/guest-contract.js';
import { QemuVm } from '../vmm/qemu/machine.js';

/**
 * The KVM lab: hosts without hardware virtualization (like this one, whose PVM-backed /dev/kvm cannot
 * boot Linux) still test Linux-on-KVM for real. An L1 guest runs under QEMU TCG with `-cpu max`, which
 * exposes AMD SVM; its kernel has KVM_AMD, so L1 gets a working /dev/kvm. The host's / is shared
 * read-only over 9p and the command runs chrooted into it, so every host program (node, QEMU, this
 * project) is there; a writable work directory (same path as on the host) carries output back.
 */
export interface LabResult {
  status: number;
  stdout: string;
  stderr: string;
  /** From spawning L1 to its readiness line. */
  l1ReadyMs: number;
  /** From L1's readiness line to the command's end. */
  commandMs: number;
  kvm: boolean;
  consoleLog: string;
}

/**
 * L1 cannot calibrate its TSC under TCG (no PIT, HPET or PM timer on microvm, and a loaded host skews
 * any loop), and with tsc_khz = 0 KVM in L1 never enters an L2 guest: every entry attempt re-queues a
 * kvmclock update and the vCPU spins at the reset vector. TCG's RDTSC reads the host's TSC, so the host's
 * rate is L1's rate; pass it with tsc_early_khz.
 */
async function hostTscKhz(): Promise<number | undefined> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo);
  const khz = mhz ? Math.round(Number(mhz[1]) * 1000) : 0;
  return khz >= 100_000 && khz <= 10_000_000 ? khz : undefined;
}

/**
 * L1's KVM must not use SVM's virtual GIF. With it (kvm_amd's default when the CPU offers it, as TCG's
 * `-cpu max` does), an L2 vCPU now and then stopped taking interrupts for good before the guest was
 * ready: its thread could not even be kicked out of KVM_RUN, or every vCPU halted waiting for a timer.
 * The same loop of native-VMM boots to readiness (2 vCPUs) stalled 3 times in 60 with vGIF and 0 times
 * in 120 without. KVM only needs vGIF to run guests of its own guests, which the lab never does. (It
 * does not end every stall: one guest CPU still stops early in boot now and then; see the README.)
 */
const L1_KVM_PARAMS = 'kvm_amd.vgif=0';

/**
 * What udev does for /dev/kvm on a distribution (GROUP="kvm", MODE="0660"; 36 is the kvm group's fixed gid on
 * Fedora), done before every command: L1 has no udev, and a /dev/kvm that is root's alone could not be opened
 * by a jailed native VMM's uid.
 */
const UDEV_KVM = '[ -c /dev/kvm ] && chgrp 36 /dev/kvm && chmod 0660 /dev/kvm';

export async function runInLab(opts: {
  /** Shell script run by /bin/sh inside the chroot, in the work directory. */
  script: string;
  timeoutMs?: number;
  memoryMiB?: number;
  vcpus?: number;
  /** Extra L1 kernel parameters (e.g. kvm_amd module options). */
  l1Cmdline?: string;
  /** Files to place in the work directory before starting. */
  files?: Record<string, string>;
  logger?: Logger;
  keepWorkDir?: boolean;
}): Promise<LabResult> {
  const image = await loadGuestImage('lab-image');
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'vrun-lab-'));
  await chmod(workDir, 0o755);
  await writeFile(path.join(workDir, 'cmd.sh'), `${UDEV_KVM}\n${opts.script}`, { mode: 0o755 });
  for (const [name, content] of Object.entries(opts.files ?? {})) await writeFile(path.join(workDir, name), content);
  const tscKhz = await hostTscKhz();
  const l1Cmdline = [BASE_CMDLINE, `vrun.labdir=${workDir}`, tscKhz ? `tsc_early_khz=${tscKhz}` : '', L1_KVM_PARAMS, opts.l1Cmdline ?? '']
    .filter(Boolean)
    .join(' ');
  const started = Date.now();
  const vm = QemuVm.start(
    {
      kernel: image.kernel,
      initrd: image.initrd,
      cmdline: l1Cmdline,
      vcpus: opts.vcpus ?? 2,
      memoryMiB: opts.memoryMiB ?? 4096,
      accel: 'tcg',
      cpu: 'max',
      ninePShares: [
        { tag: 'hostroot', path: '/', readonly: true },
        { tag: 'lab', path: workDir, readonly: false },
      ],
    },
    { consoleLog: path.join(workDir, 'console.log'), logger: opts.logger },
  );
  const timeoutMs = opts.timeoutMs ?? 600_000;
  try {
    const ready = await vm.console.waitFor(/VRUN-LAB-READY \S+ kvm=(yes|no)/, Math.min(timeoutMs, 180_000), 'VRUN-LAB-READY');
    const l1ReadyMs = Date.now() - started;
    const done = await vm.console.waitFor(/VRUN-LAB-DONE status=(\d+)/, timeoutMs - l1ReadyMs, 'VRUN-LAB-DONE');
    const commandMs = Date.now() - started - l1ReadyMs;
    await vm.exited;
    const read = (f: string) => readFile(path.join(workDir, f), 'utf8').catch(() => '');
    return {
      status: Number(done[1]),
      stdout: await read('stdout'),
      stderr: await read('stderr'),
      l1ReadyMs,
      commandMs,
      kvm: ready[1] === 'yes',
      consoleLog: vm.console.recent(80),
    };
  } catch (err) {
    await vm.kill();
    throw new VrunError(`KVM lab: ${(err as Error).message}`);
  } finally {
    await vm.kill();
    if (!opts.keepWorkDir) await rm(workDir, { recursive: true, force: true });
  }
}
