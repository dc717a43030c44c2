import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createVm } from '../../src/vmm/machine.js';
import { buildElf } from './helpers/elf-builder.js';

/**
 * Bad input to the native VMM is refused with an error naming the problem, before any VM (or
 * thread, or fd) exists: these run on any host, /dev/kvm or not.
 */
describe('native machine: bad input', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vrun-machine-err-'));
  const kernel = path.join(dir, 'vmlinux');
  writeFileSync(kernel, buildElf({ entry: 0x200000, segments: [{ paddr: 0x200000, data: Buffer.alloc(64, 0x90) }] }));
  const notElf = path.join(dir, 'bzImage');
  writeFileSync(notElf, Buffer.concat([Buffer.from('MZ not an ELF file'), Buffer.alloc(512)]));
  const base = { kernel, vcpus: 1, memoryMiB: 128 };
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const count = (d: string) => readdirSync(d).length;

  it('names each problem and leaks nothing', async () => {
    const fds = count('/proc/self/fd');
    const threads = count('/proc/self/task');
    await expect(createVm({ ...base, kernel: path.join(dir, 'missing') })).rejects.toThrow(/guest kernel .*missing does not exist/);
    await expect(createVm({ ...base, kernel: notElf })).rejects.toThrow(/bzImage is not a usable x86-64 ELF kernel: no ELF magic/);
    await expect(createVm({ ...base, memoryMiB: 16 })).rejects.toThrow(/16 MiB is below the 64 MiB minimum/);
    await expect(createVm({ ...base, vcpus: 64 })).rejects.toThrow(/64 vCPUs requested: between 1 and 32/);
    await expect(createVm({ ...base, initrd: path.join(dir, 'no-initrd') })).rejects.toThrow(/initrd .*no-initrd does not exist/);
    await expect(createVm({ ...base, shares: [{ tag: 'root', socket: path.join(dir, 'virtiofsd.sock') }] })).rejects.toThrow(
      /cannot connect to vhost-user socket .*virtiofsd\.sock/,
    );
    expect(count('/proc/self/fd')).toBe(fds);
    expect(count('/proc/self/task')).toBe(threads);
  });
});
