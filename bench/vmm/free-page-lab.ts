import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorMessage } from '../../src/common/errors.js';
import { READY_PATTERN } from '../../src/guest-image/guest-contract.js';
import { loadGuestImage } from '../../src/guest-image/image.js';
import { launchNative } from '../../src/vmm/native-backend.js';

/**
 * Run inside the KVM lab by test/vmm/native-free-page-reporting.slow.test.ts (as net-lab.ts is): boots the guest on the native VMM
 * as vrun runs it (the jailed VMM process, launchNative), once with free page reporting and once with
 * VRUN_FREE_PAGE_REPORTING=0, has the guest fill a tmpfs and delete it, and reads the guest RAM the VMM process
 * holds (Pss_Shmem of the real VMM process: guest RAM is its shared memfd) before, filled and after the free.
 * Prints one `VRUN-FPR {...}` line per run.
 */

export const FILL_MIB = 300;
const MIB = 1024;

export interface FprRun {
  reporting: boolean;
  beforeKiB?: number;
  filledKiB?: number;
  freedKiB?: number;
  /** The balloon's counters from the VMM (diagnose), when it has one. */
  balloon?: unknown;
  error?: string;
  consoleTail?: string;
}

/**
 * The guest's side (vrun.cmd): fill a tmpfs with `fillMiB` (pages it must keep), say so, wait `settleS`, delete
 * the file (pages it frees), say so, and idle. Markers: VRUN-T-BEFORE, VRUN-T-FILLED, VRUN-T-FREED.
 */
export function fillScript(fillMiB: number, settleS: number): string {
  return [
    'echo VRUN-T-BEFORE',
    'sleep 4',
    'mkdir -p /fill',
    `mount -t tmpfs -o size=${fillMiB + 100}m fill /fill`,
    `dd if=/dev/zero of=/fill/f bs=1M count=${fillMiB} 2>/dev/null`,
    'echo VRUN-T-FILLED',
    `sleep ${settleS}`,
    'rm /fill/f',
    'echo VRUN-T-FREED',
    'sleep 600',
  ].join(';');
}

/** The guest RAM a VMM process holds: its Pss_Shmem (guest RAM is a shared memfd; QEMU's and ours alike). */
export function guestRamKiB(pid: number): number {
  const m = /^Pss_Shmem:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  if (!m) throw new Error(`no Pss_Shmem for pid ${pid}`);
  return Number(m[1]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function measure(reporting: boolean): Promise<FprRun> {
  const rep: FprRun = { reporting };
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vrun-fpr-'));
  const runDir = path.join(dir, 'run');
  await mkdir(runDir, { mode: 0o700 });
  // The knob is read where the launch spec is made, as vrun reads it.
  if (reporting) delete process.env.VRUN_FREE_PAGE_REPORTING;
  else process.env.VRUN_FREE_PAGE_REPORTING = '0';
  const script = fillScript(FILL_MIB, 4);
  let vm: Awaited<ReturnType<typeof launchNative>> | undefined;
  try {
    const image = await loadGuestImage('guest-image');
    vm = await launchNative(
      { backend: 'native', accel: 'kvm' },
      {
        kernel: image.kernel,
        initrd: image.initrd,
        cmdline: `quiet vrun.cmd=${script.replace(/ /g, '%20')}`,
        vcpus: 2,
        memoryMiB: 512,
        runDir,
        agentSocket: path.join(runDir, 'agent.sock'),
        shares: [],
        consoleLog: path.join(dir, 'console.log'),
      },
    );
    const pid = vm.pid;
    if (pid === undefined) throw new Error('the VMM process has no pid');
    await vm.console.waitFor(READY_PATTERN, 300_000, 'VRUN-READY');
    await vm.console.waitFor(/VRUN-T-BEFORE/, 60_000, 'the fill script');
    // What boot freed (the initrd the kernel unpacked) is reported a few seconds later; let that settle.
    await sleep(4000);
    rep.beforeKiB = guestRamKiB(pid);
    await vm.console.waitFor(/VRUN-T-FILLED/, 300_000, 'the fill');
    rep.filledKiB = guestRamKiB(pid);
    await vm.console.waitFor(/VRUN-T-FREED/, 60_000, 'the free');
    // Linux reports in batches, 2 s after enough free memory gathered. Without reporting nothing would come:
    // that run waits the same 20 s before it is read.
    let after = guestRamKiB(pid);
    const limit = reporting ? 60_000 : 20_000;
    for (let waited = 0; waited < limit && !(reporting && after <= rep.beforeKiB + 48 * MIB); waited += 1000) {
      await sleep(1000);
      after = guestRamKiB(pid);
    }
    rep.freedKiB = after;
    const d = (await vm.diagnose?.()) ?? {};
    rep.balloon = (d.virtio as { device?: string; state?: unknown }[] | undefined)?.find((v) => v.device === 'virtio-mmio:balloon')?.state ?? null;
  } catch (err) {
    rep.error = errorMessage(err);
  } finally {
    rep.consoleTail = vm?.console.recent(20);
    await vm?.kill().catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  return rep;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const reporting of [true, false]) process.stdout.write(`VRUN-FPR ${JSON.stringify(await measure(reporting))}\n`);
}
