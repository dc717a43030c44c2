import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE_CMDLINE, READY_PATTERN } from '../../src/guest-image/guest-contract.js';
import { ensureGuestImage, type GuestImage } from '../../src/guest-image/image.js';
import { USERLAND_DISK_SERIAL } from '../../src/vmm/qemu/backend.js';
import type { QemuSpec } from '../../src/vmm/qemu/command.js';
import { QemuVm } from '../../src/vmm/qemu/machine.js';
import { probeFacts, sha256, userlandProbe } from '../../bench/vmm/userland-pmem-lab.js';

/**
 * The split guest image (issue 19): the small boot initrd plus the userland in one read-only ext4 image, served
 * to the guest as a virtio-blk disk or as persistent memory mapped with DAX. Either way the init mounts it,
 * node and crun run from it, and nothing the guest does changes the host's file; with DAX, reading the
 * userland adds nothing to the guest's page cache.
 */
const MEMORY_MIB = 512;

function attachment(image: NonNullable<GuestImage['userland']>, attach: 'disk' | 'pmem', imageMiB: number): Partial<QemuSpec> {
  if (attach === 'disk') return { readonlyDisks: [{ path: image.image, serial: USERLAND_DISK_SERIAL }] };
  return { userlandPmem: { path: image.image, sizeMiB: imageMiB } };
}

describe.each(['disk', 'pmem'] as const)('guest image with the userland as a read-only %s (QEMU TCG)', (attach) => {
  let vm: QemuVm | undefined;
  let workDir = '';
  let facts = new Map<string, string>();
  let bootInitrdBytes = 0;
  let fullInitrdBytes = 0;
  let imagePath = '';
  let hashBefore = '';

  beforeAll(async () => {
    const image = await ensureGuestImage();
    if (!image.userland) throw new Error('the guest image has no split userland');
    bootInitrdBytes = image.sizes.bootInitrd ?? 0;
    fullInitrdBytes = image.sizes.initrd;
    imagePath = image.userland.image;
    hashBefore = await sha256(imagePath);
    workDir = await mkdtemp(path.join(os.tmpdir(), 'vrun-userland-'));
    const device = attach === 'pmem' ? '/dev/pmem0' : '/dev/vda';
    const probe = userlandProbe(device);
    const { size } = await stat(imagePath);
    vm = QemuVm.start(
      {
        kernel: image.kernel,
        initrd: image.userland.initrd,
        cmdline: `${BASE_CMDLINE} vrun.check=1 vrun.cmd=${probe.replace(/ /g, '%20')}`,
        vcpus: 2,
        memoryMiB: MEMORY_MIB,
        accel: 'tcg',
        ...attachment(image.userland, attach, size / 2 ** 20),
      },
      { consoleLog: path.join(workDir, 'console.log') },
    );
    await vm.console.waitFor(READY_PATTERN, 240_000, 'VRUN-READY');
    await vm.console.waitFor(/VRUN-CHECK raw-write-done=/, 180_000, 'the probe');
    facts = probeFacts(vm.console.recent(300));
  }, 500_000);
  afterAll(async () => {
    await vm?.kill();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('boots from an initrd a small fraction of the full one', () => {
    expect(bootInitrdBytes).toBeGreaterThan(0);
    expect(bootInitrdBytes * 10).toBeLessThan(fullInitrdBytes);
  });

  it('runs node, crun and the agent files from the image', () => {
    expect(facts.get('node')).toBe(process.version);
    expect(facts.get('crun')).toMatch(/^crun version \d+\.\d+/);
    expect(facts.get('agent')).toBe('/opt/vrun/vrun-agent.js');
    expect(facts.get('usr-mount')).toBe('1');
    expect(facts.get('userland-dax')).toBe(attach === 'pmem' ? '1' : '0');
  });

  it(attach === 'pmem' ? 'keeps none of what it reads in the guest page cache' : 'caches what it reads in the guest page cache', () => {
    const grown = Number(facts.get('cached-after')) - Number(facts.get('cached-before'));
    const nodeKiB = Number(facts.get('node-kib'));
    expect(nodeKiB).toBeGreaterThan(1024);
    // Reading node whole: through a disk the guest caches it (minus what an earlier start cached already);
    // with DAX the reads come from the mapped host pages and the cache does not grow by any of it.
    if (attach === 'pmem') expect(grown).toBeLessThan(nodeKiB / 10);
    else expect(Number(facts.get('cached-after'))).toBeGreaterThanOrEqual(nodeKiB);
  });

  it("gives the guest no way to change the host's image", async () => {
    expect(facts.get('usr-write')).toBe('refused');
    expect(facts.get('remount-rw')).toBe('refused');
    expect(facts.get('raw-write-done')).toBe('1');
    // QEMU is still running: the guest's writes to the ROM range were dropped, not fatal.
    const pid = vm?.pid;
    expect(pid).toBeGreaterThan(0);
    expect(() => process.kill(pid as number, 0)).not.toThrow();
    expect(await sha256(imagePath)).toBe(hashBefore);
  });
});
