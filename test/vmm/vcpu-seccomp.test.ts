import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { nativeAddonPath } from '../../src/common/native.js';

/**
 * The vCPU threads' seccomp filter (native/src/vcpu_seccomp.cc), without /dev/kvm: the addon's
 * vcpuSeccompProbe confines a fresh thread with ConfineVcpuThread, the function the vCPU loop calls, and
 * makes it run the syscalls a vCPU thread makes, or one it must not. Each probe runs in its own Node
 * process, since a refused syscall kills the process (SECCOMP_RET_KILL_PROCESS). The boot through the
 * filter itself is test/vmm/native-boot.slow.test.ts.
 */

type Probe = { status: number | null; signal: NodeJS.Signals | null; out: Record<string, number> | undefined; stderr: string };

function probe(action: string): Probe {
  const script = `const r = require(${JSON.stringify(nativeAddonPath())}).vcpuSeccompProbe(${JSON.stringify(action)}); process.stdout.write(JSON.stringify(r));`;
  const res = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
  return { status: res.status, signal: res.signal, out: res.stdout ? (JSON.parse(res.stdout) as Record<string, number>) : undefined, stderr: res.stderr };
}

describe('vCPU thread seccomp filter', () => {
  it('lets a confined thread make the syscalls of a vCPU thread, and leaves the other threads alone', () => {
    const r = probe('allowed');
    expect(r.status, r.stderr).toBe(0);
    expect(r.out).toMatchObject({ seccomp: 2, signals: 1, eventfd: 1 });
    // Its own filter: the calling thread got none (no TSYNC).
    expect(r.out!.filters).toBe(r.out!.mainFilters! + 1);
  });

  for (const action of ['socket', 'open', 'ioctl', 'mmap-exec']) {
    it(`kills the process when a confined thread calls ${action}`, () => {
      const r = probe(action);
      expect(r.signal, `${JSON.stringify(r.out)} ${r.stderr}`).toBe('SIGSYS');
      expect(r.out).toBeUndefined();
    });
  }

  it('names an unknown probe instead of running it', () => {
    const r = probe('reboot');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/unknown action reboot/);
  });
});
