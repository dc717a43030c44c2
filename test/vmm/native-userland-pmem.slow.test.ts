import { beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/common/paths.js';
import { ensureGuestImage, ensureLabImage } from '../../src/guest-image/image.js';
import { kvmPlace, runWithLinuxKvm } from '../../src/kvm-lab/placement.js';
import type { PmemRun } from '../../bench/vmm/userland-pmem-lab.js';

/**
 * The native VMM serves the guest's userland as vrun's QEMU backend does (issue 19): the split image's
 * userland.ext4 mapped read-only above guest RAM (a KVM_MEM_READONLY slot, an e820 type-12 range), which the
 * guest init mounts from /dev/pmem0 with DAX. Where /dev/kvm runs Linux (the KVM lab here), bench/vmm/
 * userland-pmem-lab.ts boots it as vrun does and runs the QEMU test's probe; this asserts on its report.
 */

describe('native VMM: the userland as read-only persistent memory (KVM lab)', () => {
  let rep: PmemRun = {};
  let raw = '';
  const fact = (k: string) => rep.facts?.[k];

  beforeAll(async () => {
    await ensureGuestImage();
    if (kvmPlace() === 'lab') await ensureLabImage();
    const res = await runWithLinuxKvm(`cd '${projectRoot()}' && exec node dist/bench/vmm/userland-pmem-lab.js`, { timeoutMs: 900_000 });
    raw = `status ${res.status}\nstdout: ${res.stdout}\nstderr: ${res.stderr}\nconsole:\n${res.consoleLog}`;
    const line = /^VRUN-PMEM (.*)$/m.exec(res.stdout);
    expect(line, raw).not.toBeNull();
    rep = JSON.parse(line![1]!) as PmemRun;
    expect(rep.error, `${rep.consoleTail}\n${raw}`).toBeUndefined();
    const mib = (k: string) => ((rep.pssKiB?.[k] ?? 0) / 1024).toFixed(1);
    console.log(`native VMM process after the probe: PSS ${mib('Pss')} MiB (guest RAM ${mib('Pss_Shmem')}, file ${mib('Pss_File')}, anon ${mib('Pss_Anon')})`);
  }, 1_000_000);

  it('is what vrun picks for the native VMM', () => {
    expect(rep.attach).toBe('pmem');
  });

  it('runs node, crun and the agent files from the image, mounted with DAX', () => {
    expect(fact('node')).toBe(process.version);
    expect(fact('crun')).toMatch(/^crun version \d+\.\d+/);
    expect(fact('agent')).toBe('/opt/vrun/vrun-agent.js');
    expect(fact('usr-mount')).toBe('1');
    expect(fact('userland-dax')).toBe('1');
  });

  it('keeps none of what it reads in the guest page cache', () => {
    const nodeKiB = Number(fact('node-kib'));
    expect(nodeKiB).toBeGreaterThan(1024);
    expect(Number(fact('cached-after')) - Number(fact('cached-before'))).toBeLessThan(nodeKiB / 10);
  });

  it("gives the guest no way to change the host's image, and its raw writes do not stop the VMM", () => {
    expect(fact('usr-write')).toBe('refused');
    expect(fact('remount-rw')).toBe('refused');
    expect(fact('raw-write-done')).toBe('1');
    expect(rep.vmmAlive).toBe(true);
    expect(rep.hashBefore).toMatch(/^[0-9a-f]{64}$/);
    expect(rep.hashAfter).toBe(rep.hashBefore);
  });
});
