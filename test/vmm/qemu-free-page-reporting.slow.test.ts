import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BASE_CMDLINE, READY_PATTERN } from '../../src/guest-image/guest-contract.js';
import { loadGuestImage } from '../../src/guest-image/image.js';
import { QemuVm } from '../../src/vmm/qemu/machine.js';
import { fillScript, guestRamKiB } from '../../bench/vmm/free-page-lab.js';

/**
 * Free page reporting (issue 19): a guest that fills most of its memory and frees it again gives it back to
 * the host. Measured from the host as QEMU's Pss_Shmem (guest RAM is a shared memfd, so what the guest has
 * touched is QEMU's shmem): before the fill, with the fill in place, and after the guest freed it.
 */

const MIB = 1024;
const FILL_MIB = 360;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('virtio-balloon free page reporting under QEMU', () => {
  let vm: QemuVm | undefined;
  let workDir = '';
  afterAll(async () => {
    await vm?.kill();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('returns the memory a guest touched and freed to the host', async () => {
    const image = await loadGuestImage();
    workDir = await mkdtemp(path.join(os.tmpdir(), 'vrun-fpr-'));
    // The guest fills a tmpfs (pages it must keep), says so, then deletes the file (pages it frees) and idles.
    const script = fillScript(FILL_MIB, 6);
    vm = QemuVm.start(
      {
        kernel: image.kernel,
        initrd: image.initrd,
        cmdline: `${BASE_CMDLINE} quiet vrun.cmd=${script.replace(/ /g, '%20')}`,
        vcpus: 2,
        memoryMiB: 512,
        accel: 'tcg',
        freePageReporting: true,
      },
      { consoleLog: path.join(workDir, 'console.log') },
    );
    const pid = vm.pid as number;
    await vm.console.waitFor(READY_PATTERN, 240_000, 'VRUN-READY');
    await vm.console.waitFor(/VRUN-T-BEFORE/, 60_000, 'the fill script');
    // What boot freed (the initrd the kernel unpacked) is reported a few seconds after; let that settle.
    await sleep(3000);
    const before = guestRamKiB(pid);
    await vm.console.waitFor(/VRUN-T-FILLED/, 240_000, 'the fill');
    const during = guestRamKiB(pid);
    await vm.console.waitFor(/VRUN-T-FREED/, 60_000, 'the free');
    // Reporting runs in batches, 2 s after enough free memory gathered; under TCG give it a while.
    let after = guestRamKiB(pid);
    for (let waited = 0; waited < 60_000 && after > before + 48 * MIB; waited += 1000) {
      await sleep(1000);
      after = guestRamKiB(pid);
    }
    process.stdout.write(`guest RAM touched (QEMU Pss_Shmem): before ${(before / MIB).toFixed(1)} MiB, filled ${(during / MIB).toFixed(1)} MiB, freed ${(after / MIB).toFixed(1)} MiB\n`);
    expect(during - before).toBeGreaterThan((FILL_MIB - 40) * MIB);
    expect(after).toBeLessThan(before + 48 * MIB);
  }, 600_000);
});
