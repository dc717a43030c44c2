import { afterEach, describe, expect, it } from 'vitest';
import { bootFiles } from '../../src/guest-image/boot-files.js';
import type { GuestImage } from '../../src/guest-image/image.js';
import { qemuArgs, type QemuSpec } from '../../src/vmm/qemu/command.js';

/**
 * The QEMU side of issue 19 without starting anything: the read-only userland disk and the balloon with free
 * page reporting on QEMU's command line, and which boot files a pod gets. Booting on them is covered by
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

  it('adds virtio-balloon with free page reporting only when asked', () => {
    expect(pairs(qemuArgs({ ...base, freePageReporting: true }), '-device')).toContain('virtio-balloon-device,free-page-reporting=on');
    expect(qemuArgs(base).join(' ')).not.toMatch(/balloon/);
  });
});

describe('bootFiles', () => {
  const saved = process.env.VRUN_GUEST_USERLAND;
  afterEach(() => {
    if (saved === undefined) delete process.env.VRUN_GUEST_USERLAND;
    else process.env.VRUN_GUEST_USERLAND = saved;
  });
  const image: GuestImage = { kernel: '/k', bzImage: '/b', initrd: '/full.cpio', kernelRelease: '6.1', configHash: 'h', userland: { initrd: '/boot.cpio', image: '/u.ext4' } };

  it('gives the native VMM the full initrd, whatever the image has', () => {
    delete process.env.VRUN_GUEST_USERLAND;
    expect(bootFiles(image, 'native')).toEqual({ initrd: '/full.cpio' });
  });

  it('gives QEMU the split userland by default, and the full initrd when the image predates it or when asked', () => {
    delete process.env.VRUN_GUEST_USERLAND;
    expect(bootFiles(image, 'qemu')).toEqual({ initrd: '/boot.cpio', userlandImage: '/u.ext4' });
    const { userland: _none, ...old } = image;
    expect(bootFiles(old, 'qemu')).toEqual({ initrd: '/full.cpio' });
    process.env.VRUN_GUEST_USERLAND = 'initrd';
    expect(bootFiles(image, 'qemu')).toEqual({ initrd: '/full.cpio' });
  });

  it('gives QEMU the split userland when asked, and refuses it for the native VMM', () => {
    process.env.VRUN_GUEST_USERLAND = 'disk';
    expect(bootFiles(image, 'qemu')).toEqual({ initrd: '/boot.cpio', userlandImage: '/u.ext4' });
    expect(() => bootFiles(image, 'native')).toThrow(/only the QEMU backend/);
  });

  it('asked for explicitly, an image built before the split form is an error naming the fix', () => {
    process.env.VRUN_GUEST_USERLAND = 'disk';
    const { userland: _none, ...old } = image;
    expect(() => bootFiles(old, 'qemu')).toThrow(/no split userland/);
  });

  it('refuses an unknown mode by name', () => {
    process.env.VRUN_GUEST_USERLAND = 'pmem';
    expect(() => bootFiles(image, 'qemu')).toThrow(/VRUN_GUEST_USERLAND=pmem/);
  });
});
