/**
 * The pod VM lifecycle the CLI's sandbox and the containerd shim share (src/sandbox/pod-vm.ts), on its
 * failure paths, with real virtiofsd and QEMU: whatever part fails, boot rejects naming the first cause and
 * leaves no process behind. (The happy path runs in every `vrun run` and shim test.)
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fileLogger } from '../../src/common/log.js';
import { PodVm, type PodVmSpec } from '../../src/sandbox/pod-vm.js';
import { killAndUnmount, processesNaming } from './leftovers.js';

describe('PodVm boot failures', () => {
  let dir: string;
  const log = fileLogger({ write: () => true }, { level: 'silent' });

  const spec = (shares: PodVmSpec['shares']): PodVmSpec => ({
    vmm: 'qemu-tcg',
    vcpus: 1,
    memoryMiB: 256,
    shares,
    paths: {
      runDir: path.join(dir, 'vm'),
      agent: path.join(dir, 'vm', 'agent.sock'),
      console: path.join(dir, 'console.log'),
      fsSocket: (i) => path.join(dir, 'vm', `fs${i}.sock`),
    },
  });

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vrun-podvm-'));
    mkdirSync(path.join(dir, 'share'));
  });

  afterEach(() => {
    killAndUnmount(dir);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a share that cannot be served fails the boot by name and stops the virtiofsd that did start', async () => {
    let launched = false;
    const missing = path.join(dir, 'no-such-dir');
    const boot = PodVm.boot(
      spec([
        { tag: 'one', dir: path.join(dir, 'share'), what: 'first share' },
        { tag: 'two', dir: missing, what: 'second share' },
      ]),
      log,
      { onDeath: () => undefined, onLaunched: async () => void (launched = true) },
    );
    await expect(boot).rejects.toThrow(`shared directory ${missing} does not exist`);
    expect(launched).toBe(false);
    expect(processesNaming(dir)).toEqual([]);
  });

  it('a VM killed while the guest boots fails the boot with the VM\'s reason, heard once, nothing left running', async () => {
    const deaths: string[] = [];
    const pids: number[] = [];
    const boot = PodVm.boot(spec([{ tag: 'one', dir: path.join(dir, 'share'), what: 'share' }]), log, {
      onDeath: (reason) => deaths.push(reason),
      onLaunched: async (pod) => {
        const { vmm, virtiofsd } = pod.pids;
        expect(vmm).toBeGreaterThan(1);
        expect(virtiofsd).toHaveLength(1);
        pids.push(vmm ?? 0, ...virtiofsd);
        process.kill(vmm ?? 0, 'SIGKILL');
      },
    });
    await expect(boot).rejects.toThrow(/^the VM stopped unexpectedly: QEMU killed by SIGKILL$/);
    expect(deaths).toEqual(['the VM stopped unexpectedly: QEMU killed by SIGKILL']);
    expect(processesNaming(dir).filter((p) => pids.includes(p.pid))).toEqual([]);
    expect(processesNaming(dir)).toEqual([]);
  });
});
