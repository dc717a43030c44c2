import { beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/common/paths.js';
import { ensureGuestImage, ensureLabImage } from '../../src/guest-image/image.js';
import { kvmPlace, runWithLinuxKvm } from '../../src/kvm-lab/placement.js';
import { FILL_MIB, type FprRun } from '../../bench/vmm/free-page-lab.js';

/**
 * Free page reporting on the native VMM (issue 19), where /dev/kvm can run Linux (the KVM lab on this kind of
 * host): a guest that fills a tmpfs and deletes it gives that memory back to the host. bench/vmm/
 * free-page-lab.ts boots the guest as vrun runs it (the jailed VMM process) and reads the VMM process's
 * Pss_Shmem (guest RAM is its shared memfd) before the fill, filled and after the free; once with the balloon
 * and once without it (VRUN_FREE_PAGE_REPORTING=0), the peer that shows what the balloon gives back.
 */

const MIB = 1024;

describe('native VMM free page reporting (KVM lab)', () => {
  let runs: FprRun[] = [];
  let raw = '';

  beforeAll(async () => {
    await ensureGuestImage();
    if (kvmPlace() === 'lab') await ensureLabImage();
    const res = await runWithLinuxKvm(`cd '${projectRoot()}' && exec node dist/bench/vmm/free-page-lab.js`, { timeoutMs: 1_500_000 });
    raw = `status ${res.status}\nstdout: ${res.stdout}\nstderr: ${res.stderr}\nconsole:\n${res.consoleLog}`;
    runs = [...res.stdout.matchAll(/^VRUN-FPR (.*)$/gm)].map((m) => JSON.parse(m[1]!) as FprRun);
    expect(runs.length, raw).toBe(2);
    const [a, b] = [runs.find((x) => x.reporting), runs.find((x) => !x.reporting)];
    if (a?.freedKiB && b?.freedKiB) console.log(`guest RAM held after the free, with/without the balloon: ${(a.freedKiB / b.freedKiB).toFixed(2)}`);
    for (const r of runs) {
      expect(r.error, `${r.consoleTail}\n${raw}`).toBeUndefined();
      const mib = (k?: number) => ((k ?? 0) / MIB).toFixed(1);
      console.log(
        `native VMM guest RAM held (Pss_Shmem), ${r.reporting ? 'with' : 'without'} free page reporting: before ${mib(r.beforeKiB)} MiB, filled ${mib(r.filledKiB)} MiB, freed ${mib(r.freedKiB)} MiB; balloon ${JSON.stringify(r.balloon)}`,
      );
    }
  }, 1_600_000);

  it('gives the memory the guest filled and freed back to the host', () => {
    const r = runs.find((x) => x.reporting)!;
    expect(r.filledKiB! - r.beforeKiB!).toBeGreaterThan((FILL_MIB - 40) * MIB);
    expect(r.freedKiB!).toBeLessThan(r.beforeKiB! + 48 * MIB);
    expect((r.balloon as { bytesDiscarded: number }).bytesDiscarded).toBeGreaterThan((FILL_MIB - 40) * MIB * 1024);
    expect((r.balloon as { discardErrors: number }).discardErrors).toBe(0);
  });

  it('keeps it without the balloon (VRUN_FREE_PAGE_REPORTING=0), far above what the balloon leaves', () => {
    const r = runs.find((x) => !x.reporting)!;
    const withIt = runs.find((x) => x.reporting)!;
    expect(r.balloon).toBeNull();
    // Boot's own freed memory stays too, so the fill partly reuses pages the host already holds: only "nothing
    // came back" is certain here.
    expect(r.filledKiB!).toBeGreaterThan(r.beforeKiB!);
    expect(r.freedKiB!).toBeGreaterThan(r.filledKiB! - 16 * MIB);
    expect(r.freedKiB! - withIt.freedKiB!).toBeGreaterThan((FILL_MIB - 100) * MIB);
  });
});
