import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseFragment, checkConfig } from '../../src/guest-image/kernel.js';

describe('kernel config fragments', () => {
  it('rejects config fragments it cannot honour, naming the option', () => {
    expect(() => parseFragment('CONFIG_FOO=m\n', 'x.fragment')).toThrow(/x.fragment:1: CONFIG_FOO=m/);
    expect(() => parseFragment('FOO=y\n', 'x.fragment')).toThrow(/not a kernel config line/);
    const wanted = parseFragment('CONFIG_A=y\nCONFIG_B=n\n', 'f');
    expect(checkConfig('CONFIG_A=y\n# CONFIG_B is not set\n', wanted)).toEqual([]);
    expect(checkConfig('# CONFIG_A is not set\nCONFIG_B=y\n', wanted)).toEqual(['CONFIG_A=y (got not set)', 'CONFIG_B=n (got y)']);
  });

  it('parses the project fragments and asks for every option the design needs', () => {
    const root = path.resolve(import.meta.dirname, '../..');
    const guest = parseFragment(readFileSync(path.join(root, 'guest-image/kernel.fragment'), 'utf8'), 'kernel.fragment');
    for (const opt of ['CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES', 'CONFIG_VIRTIO_CONSOLE', 'CONFIG_VIRTIO_FS', 'CONFIG_OVERLAY_FS', 'CONFIG_MEMCG', 'CONFIG_CGROUP_PIDS', 'CONFIG_X86_MPPARSE', 'CONFIG_ADVISE_SYSCALLS', 'CONFIG_MEMBARRIER', 'CONFIG_SECCOMP_FILTER', 'CONFIG_IO_URING']) {
      expect(guest.get(opt), opt).toBe('y');
    }
    const lab = parseFragment(readFileSync(path.join(root, 'guest-image/kernel-lab.fragment'), 'utf8'), 'kernel-lab.fragment');
    for (const opt of ['CONFIG_KVM', 'CONFIG_KVM_AMD', 'CONFIG_9P_FS', 'CONFIG_NET_9P_VIRTIO']) expect(lab.get(opt), opt).toBe('y');
  });
});
