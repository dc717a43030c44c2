import { beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/common/paths.js';
import { ensureGuestImage, ensureLabImage } from '../../src/guest-image/image.js';
import { kvmPlace, runWithLinuxKvm } from '../../src/kvm-lab/placement.js';
import { USERNS_RANGE_BASE } from '../../src/vmm/jail/ids.js';

/**
 * The native VMM boots the real guest image (kernel + initrd) with 2 vCPUs where /dev/kvm can run
 * Linux (the KVM lab on this kind of host). src/vmm/selfcheck/machine-check.ts runs two boots and reports each
 * as a `VRUN-MACHINE {...}` line: `boot` (virtio-fs share served by a real virtiofsd, bytes through
 * the vrun.agent console port, then poweroff) and `panic` (no initrd: the kernel finds no root and
 * panics). This asserts on those reports, and on the seccomp state of the VMM's threads the boot check read
 * while the guest ran (native/src/vcpu_seccomp.cc: a filter of their own on the vCPU threads, issue 21).
 */

type Report = Record<string, unknown> & { name: string; lines?: string[]; error?: string; consoleTail?: string };

describe('native VMM boots the guest image', () => {
  const reports = new Map<string, Report>();
  let raw = '';
  let res: Awaited<ReturnType<typeof runWithLinuxKvm>>;

  beforeAll(async () => {
    await ensureGuestImage();
    if (kvmPlace() === 'lab') await ensureLabImage();
    res = await runWithLinuxKvm(`cd '${projectRoot()}' && exec node dist/src/vmm/selfcheck/machine-check.js --vcpus 2 boot panic`, { timeoutMs: 900_000 });
    raw = `status ${res.status}\nstdout: ${res.stdout}\nstderr: ${res.stderr}\nconsole:\n${res.consoleLog}`;
    for (const m of res.stdout.matchAll(/^VRUN-MACHINE (.*)$/gm)) {
      const rep = JSON.parse(m[1]!) as Report;
      reports.set(rep.name, rep);
    }
    expect(reports.size, raw).toBe(2);
  }, 1_000_000);

  const report = (name: string): Report => {
    const rep = reports.get(name);
    expect(rep, raw).toBeDefined();
    expect(rep!.error, `${rep!.consoleTail}\n${raw}`).toBeUndefined();
    return rep!;
  };

  it('reaches the readiness line with 2 vCPUs and its virtio-mmio devices', () => {
    const rep = report('boot');
    expect(rep.readyMs).toBeGreaterThan(0);
    expect(rep.lines).toContain('VRUN-CHECK nproc=2');
    const devices = rep.lines!.find((l) => l.startsWith('VRUN-CHECK virtio-devices='));
    expect(devices).toMatch(/0x0003/); // console
    expect(devices).toMatch(/0x001a/); // fs
  });

  it('runs every vCPU thread under a seccomp filter of its own, and the boot got through it', () => {
    type Thread = { tid: number; name: string; seccomp: number; filters?: number };
    const threads = report('boot').threads as { main?: Thread; vcpus: Thread[] };
    expect(threads.vcpus.map((t) => t.name).sort()).toEqual(['vcpu 0', 'vcpu 1']);
    expect(threads.main).toBeDefined();
    for (const t of threads.vcpus) {
      expect(t.seccomp, JSON.stringify(threads)).toBe(2);
      // Installed by the thread for itself (no TSYNC): one filter more than Node's main thread has.
      expect(t.filters, JSON.stringify(threads)).toBe(threads.main!.filters! + 1);
    }
  });

  it('reads a file from a virtio-fs share served by a real virtiofsd', () => {
    expect(report('boot').lines).toContain('VRUN-FS-CONTENT served-by-virtiofsd');
  });

  it('runs virtiofsd as a non-root uid, or as root only where the kernel says it cannot id-map the share', () => {
    const fsd = report('boot').virtiofsd as { uid: number; unmapped?: string };
    // Debian 12's own Linux 6.1 cannot id-map tmpfs (nor any kernel overlayfs): there virtiofsd runs as root.
    if (fsd.uid === 0) expect(fsd.unmapped).toMatch(/^Linux \S+ cannot id-map \/\S+\/share: /);
    else expect(fsd).toEqual({ uid: expect.any(Number) });
    if (fsd.uid !== 0) expect(fsd.uid).toBeGreaterThanOrEqual(USERNS_RANGE_BASE);
    // The KVM lab's L1 runs Linux 6.12, with the command's TMPDIR (where the share is) on a tmpfs: id-mapped there.
    console.log(`virtiofsd (${res.place}): host uid ${fsd.uid}${fsd.unmapped ? `, unmapped: ${fsd.unmapped}` : ', id-mapped share'}`);
    if (res.place === 'lab') {
      expect(fsd.unmapped, raw).toBeUndefined();
      expect(fsd.uid).toBeGreaterThanOrEqual(USERNS_RANGE_BASE);
    }
  });

  it('round-trips bytes through the vrun.agent port', () => {
    expect(report('boot').echo).toBe('HELLO');
  });

  it('ends as a poweroff after the guest command reported its status', () => {
    const rep = report('boot');
    expect(rep.lines!.at(-1)).toBe('VRUN-CMD-STATUS=0');
    expect(rep.end).toEqual({ kind: 'poweroff' });
  });

  it('reports a guest kernel panic as a panic', () => {
    const rep = report('panic');
    expect(rep.end).toMatchObject({ kind: 'panic' });
    expect((rep.end as { line: string }).line).toMatch(/^Kernel panic - not syncing: /);
  });
});
