import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE_CMDLINE, READY_PATTERN } from '../../src/guest-image/guest-contract.js';
import { ensureGuestImage } from '../../src/guest-image/image.js';
import { USERLAND_DISK_SERIAL } from '../../src/vmm/qemu/backend.js';
import { QemuVm } from '../../src/vmm/qemu/machine.js';

/**
 * The split guest image (issue 19): the small boot initrd plus the userland on a read-only virtio-blk disk.
 * The init mounts the disk by its serial, node and crun run from it, and the guest cannot write to it.
 */
function checks(consoleText: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of consoleText.matchAll(/^VRUN-CHECK ([a-z0-9-]+)=(.*)$/gm)) out.set(m[1] as string, (m[2] as string).trim());
  return out;
}

describe('guest image with the userland on a read-only disk (QEMU TCG)', () => {
  let vm: QemuVm | undefined;
  let workDir = '';
  let facts = new Map<string, string>();
  let bootInitrdBytes = 0;
  let fullInitrdBytes = 0;

  beforeAll(async () => {
    const image = await ensureGuestImage();
    if (!image.userland) throw new Error('the guest image has no split userland');
    bootInitrdBytes = image.sizes.bootInitrd ?? 0;
    fullInitrdBytes = image.sizes.initrd;
    workDir = await mkdtemp(path.join(os.tmpdir(), 'vrun-userland-'));
    // After the self-check: where /usr comes from, and whether the guest can write to it (it must not).
    const probe = [
      // Single quotes only: the kernel's command line parser takes double quotes as its own.
      "echo VRUN-CHECK usr-mount=$(grep -c ' /usr ext4 ro,' /proc/mounts)",
      'if touch /usr/x 2>/dev/null; then echo VRUN-CHECK usr-write=ok; else echo VRUN-CHECK usr-write=refused; fi',
      'if mount -o remount,rw /.userland 2>/dev/null; then echo VRUN-CHECK remount-rw=ok; else echo VRUN-CHECK remount-rw=refused; fi',
      'echo VRUN-CHECK agent=$(ls /opt/vrun/vrun-agent.js)',
    ].join(';');
    vm = QemuVm.start(
      {
        kernel: image.kernel,
        initrd: image.userland.initrd,
        cmdline: `${BASE_CMDLINE} vrun.check=1 vrun.cmd=${probe.replace(/ /g, '%20')}`,
        vcpus: 2,
        memoryMiB: 512,
        accel: 'tcg',
        readonlyDisks: [{ path: image.userland.image, serial: USERLAND_DISK_SERIAL }],
      },
      { consoleLog: path.join(workDir, 'console.log') },
    );
    await vm.console.waitFor(READY_PATTERN, 240_000, 'VRUN-READY');
    await vm.console.waitFor(/VRUN-CHECK agent=/, 120_000, 'the probe');
    facts = checks(vm.console.recent(300));
  }, 400_000);
  afterAll(async () => {
    await vm?.kill();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('boots from an initrd a small fraction of the full one', () => {
    expect(bootInitrdBytes).toBeGreaterThan(0);
    expect(bootInitrdBytes * 10).toBeLessThan(fullInitrdBytes);
  });

  it('runs node, crun and the agent files from the disk', () => {
    expect(facts.get('node')).toBe(process.version);
    expect(facts.get('crun')).toMatch(/^crun version \d+\.\d+/);
    expect(facts.get('agent')).toBe('/opt/vrun/vrun-agent.js');
    expect(facts.get('usr-mount')).toBe('1');
  });

  it('gives the guest no way to write to the disk', () => {
    expect(facts.get('usr-write')).toBe('refused');
    expect(facts.get('remount-rw')).toBe('refused');
  });
});
