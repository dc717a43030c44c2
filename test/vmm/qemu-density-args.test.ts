import { afterEach, describe, expect, it } from 'vitest';
import { bootFiles } from '../../src/guest-image/boot-files.js';
import type { GuestImage } from '../../src/guest-image/image.js';
import { qemuArgs, type QemuSpec } from '../../src/vmm/qemu/command.js';
import { placeUserlandPmem } from '../../src/vmm/qemu/userland-pmem.js';

/**
 * The QEMU side of issue 19 without starting anything: the userland as a read-only disk or as persistent
 * memory, and the balloon with free page reporting, on QEMU's command line; where the pmem range may go; which
 * boot files a pod gets. Booting on them is covered by test/guest-image/userland-image.slow.test.ts,
 * test/vmm/qemu-free-page-reporting.slow.test.ts and the pod tests.
 */

const base: QemuSpec = { kernel: '/k', cmdline: 'console=ttyS0', vcpus: 1, memoryMiB: 128, accel: 'tcg' };

function pairs(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1] ?? ''] : []));
}

describe('QEMU arguments for the userland disk and the balloon', () => {
  it('attaches a read-only disk QEMU opens read-only, found by its serial', () => {
    const args = qemuArgs({ ...base, readonlyDisks: [{ path: '/var/lib/vrun/u,1.ext4', serial: 'vrun-userland' }] });
    expect(pairs(args, '-blockdev')).toEqual(['driver=file,node-name=rodisk0,filename=/var/lib/vrun/u,,1.ext4,read-only=on,locking=off']);
    expect(pairs(args, '-device')).toContain('virtio-blk-device,drive=rodisk0,serial=vrun-userland');
  });

  it.each([
    ['a serial with a comma (option injection)', { path: '/u.img', serial: 'a,readonly=off' }, /serial/],
    ['a serial longer than virtio-blk holds', { path: '/u.img', serial: 'x'.repeat(21) }, /serial/],
    ['a relative path', { path: 'u.img', serial: 'u' }, /not absolute/],
  ])('refuses %s', (_what, disk, err) => {
    expect(() => qemuArgs({ ...base, readonlyDisks: [disk] })).toThrow(err);
  });

  it('maps the userland image read-only between two parts of guest RAM as NUMA nodes, and marks its range as pmem', () => {
    const args = qemuArgs({ ...base, memoryMiB: 512, userlandPmem: { path: '/var/lib/vrun/u,1.ext4', sizeMiB: 120 } });
    expect(pairs(args, '-m')).toEqual(['632M']);
    expect(pairs(args, '-object')).toEqual([
      'memory-backend-memfd,id=mem,size=480M,share=on',
      'memory-backend-file,id=userland,mem-path=/var/lib/vrun/u,,1.ext4,size=120M,share=on,readonly=on',
      // RAM at the top of low memory, where QEMU loads the initrd.
      'memory-backend-memfd,id=mem-top,size=32M,share=on',
    ]);
    expect(pairs(args, '-numa')).toEqual(['node,memdev=mem', 'node,memdev=userland', 'node,memdev=mem-top']);
    // The machine must not also claim the RAM backend: the NUMA nodes are the RAM.
    expect(pairs(args, '-M')[0]).not.toMatch(/memory-backend/);
    expect(pairs(args, '-append')).toEqual(['console=ttyS0 memmap=120M!480M vrun.userland=pmem']);
    const plain = qemuArgs({ ...base, memoryMiB: 512 });
    expect(pairs(plain, '-M')[0]).toMatch(/memory-backend=mem/);
    expect(plain).not.toContain('-numa');
    expect(pairs(plain, '-append')).toEqual(['console=ttyS0']);
  });

  it('refuses a pmem mapping that does not fit, instead of handing the guest a broken memory map', () => {
    expect(() => qemuArgs({ ...base, memoryMiB: 3000, userlandPmem: { path: '/u.ext4', sizeMiB: 120 } })).toThrow(/3072 MiB of low memory/);
    expect(() => qemuArgs({ ...base, memoryMiB: 513, userlandPmem: { path: '/u.ext4', sizeMiB: 120 } })).toThrow(/2 MiB boundary/);
  });

  it('adds virtio-balloon with free page reporting only when asked', () => {
    expect(pairs(qemuArgs({ ...base, freePageReporting: true }), '-device')).toContain('virtio-balloon-device,free-page-reporting=on');
    expect(qemuArgs(base).join(' ')).not.toMatch(/balloon/);
  });
});

describe('placeUserlandPmem', () => {
  const MiB = 2 ** 20;
  it('puts the range 32 MiB below the end of guest RAM', () => {
    expect(placeUserlandPmem(416, 120 * MiB)).toEqual({ ok: true, lowMiB: 384, sizeMiB: 120, topMiB: 32, cmdline: 'memmap=120M!384M vrun.userland=pmem' });
    expect(placeUserlandPmem(2952, 120 * MiB)).toMatchObject({ ok: true, lowMiB: 2920 });
  });

  it.each([
    ['an image that is not whole 2 MiB blocks (an older build)', 512, 119 * MiB + 4096, /not a whole number of 2 MiB/],
    ['an empty image', 512, 0, /not a whole number/],
    ['guest RAM off a 2 MiB boundary', 417, 120 * MiB, /2 MiB boundary/],
    ['a range past the 3 GiB below 4 GiB', 2954, 120 * MiB, /3072 MiB/],
    ['guest RAM too small to split', 62, 120 * MiB, /too small/],
  ])('refuses %s with the reason', (_what, ram, bytes, reason) => {
    const placed = placeUserlandPmem(ram, bytes);
    expect(placed.ok).toBe(false);
    expect(placed.ok ? '' : placed.reason).toMatch(reason);
  });
});

describe('bootFiles', () => {
  const saved = process.env.VRUN_GUEST_USERLAND;
  afterEach(() => {
    if (saved === undefined) delete process.env.VRUN_GUEST_USERLAND;
    else process.env.VRUN_GUEST_USERLAND = saved;
  });
  const image: GuestImage = { kernel: '/k', bzImage: '/b', initrd: '/full.cpio', kernelRelease: '6.1', configHash: 'h', userland: { initrd: '/boot.cpio', image: '/u.ext4' } };

  it('gives the native VMM the split userland as pmem by default, the full initrd when the image predates it or when asked', () => {
    delete process.env.VRUN_GUEST_USERLAND;
    expect(bootFiles(image, 'native')).toEqual({ initrd: '/boot.cpio', userland: { image: '/u.ext4', attach: 'pmem' } });
    const { userland: _none, ...old } = image;
    expect(bootFiles(old, 'native')).toEqual({ initrd: '/full.cpio' });
    process.env.VRUN_GUEST_USERLAND = 'initrd';
    expect(bootFiles(image, 'native')).toEqual({ initrd: '/full.cpio' });
  });

  it('gives QEMU the split userland as pmem by default, and the full initrd when the image predates it or when asked', () => {
    delete process.env.VRUN_GUEST_USERLAND;
    expect(bootFiles(image, 'qemu')).toEqual({ initrd: '/boot.cpio', userland: { image: '/u.ext4', attach: 'pmem' } });
    const { userland: _none, ...old } = image;
    expect(bootFiles(old, 'qemu')).toEqual({ initrd: '/full.cpio' });
    process.env.VRUN_GUEST_USERLAND = 'initrd';
    expect(bootFiles(image, 'qemu')).toEqual({ initrd: '/full.cpio' });
  });

  it.each(['disk', 'pmem'] as const)('gives QEMU the split userland as %s when asked', (attach) => {
    process.env.VRUN_GUEST_USERLAND = attach;
    expect(bootFiles(image, 'qemu')).toEqual({ initrd: '/boot.cpio', userland: { image: '/u.ext4', attach } });
  });

  it('refuses the userland as a disk for the native VMM, which has no virtio-blk', () => {
    process.env.VRUN_GUEST_USERLAND = 'disk';
    expect(() => bootFiles(image, 'native')).toThrow(/only the QEMU backend has a virtio-blk disk/);
    process.env.VRUN_GUEST_USERLAND = 'pmem';
    expect(bootFiles(image, 'native')).toEqual({ initrd: '/boot.cpio', userland: { image: '/u.ext4', attach: 'pmem' } });
  });

  it('asked for explicitly, an image built before the split form is an error naming the fix', () => {
    process.env.VRUN_GUEST_USERLAND = 'disk';
    const { userland: _none, ...old } = image;
    expect(() => bootFiles(old, 'qemu')).toThrow(/no split userland/);
  });

  it('refuses an unknown mode by name', () => {
    process.env.VRUN_GUEST_USERLAND = 'nvme';
    expect(() => bootFiles(image, 'qemu')).toThrow(/VRUN_GUEST_USERLAND=nvme/);
  });
});
