/**
 * A CRI pod's VM is sized from the pod's resources (LinuxPodSandboxConfig.resources, which kubelet fills with
 * the sum of the containers' limits): containerd 1.6 puts them on the sandbox's spec as annotations, and the
 * guest a container of the pod sees has the limit plus the guest's overhead, and a vCPU per CPU of the limit.
 * A pod without resources gets the runtime options' size; a negative limit is refused by name.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_GUEST_MEMORY_MIB, guestMemoryMiB } from '../../src/sandbox/guest-memory.js';
import { podDirFor } from '../../src/shim/pod-paths.js';
import { DEFAULT_POD_VM } from '../../src/shim/runtime-options.js';
import { processesNaming } from '../sandbox/leftovers.js';
import { IMAGE } from './cri-fixture.js';
import { useCriTestRun } from './cri-test-run.js';

const MiB = 2 ** 20;

interface ExecResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

interface GuestSize {
  memTotalMiB: number;
  nproc: number;
}

describe('a CRI pod VM sized from the pod resources', () => {
  const cri = useCriTestRun('vrun-crisize-');
  const sandboxConfig = (name: string, resources?: Record<string, number>) => ({
    metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
    hostname: name,
    logDirectory: cri.env.logDir,
    linux: resources ? { resources } : {},
  });

  afterEach(() => cri.endPod().catch(() => undefined));

  /** Runs a pod with one container and reads the guest's memory and CPUs from inside that container. */
  async function guestOf(config: ReturnType<typeof sandboxConfig>): Promise<GuestSize> {
    const sandbox = await cri.env.call<{ podSandboxId: string }>('RunPodSandbox', { config, runtimeHandler: 'vrun' }).catch((err: Error) => {
      throw new Error(`${err.message}\n${cri.env.log().slice(-3000)}`);
    });
    cri.podId = sandbox.podSandboxId;
    const created = await cri.env.call<{ containerId: string }>('CreateContainer', {
      podSandboxId: cri.podId,
      config: { metadata: { name: 'app' }, image: { image: IMAGE }, command: ['sleep', '100000'], logPath: `${config.metadata.name}.log` },
      sandboxConfig: config,
    });
    await cri.env.call('StartContainer', { containerId: created.containerId });
    const r = await cri.env.call<ExecResult>('ExecSync', { containerId: created.containerId, cmd: ['sh', '-c', 'cat /proc/meminfo; echo nproc=$(busybox nproc)'], timeout: 120 });
    expect(r.exitCode, r.stderr.toString()).toBe(0);
    const out = r.stdout.toString();
    const kb = /^MemTotal:\s+(\d+) kB$/m.exec(out)?.[1];
    const nproc = /^nproc=(\d+)$/m.exec(out)?.[1];
    expect(kb, out).toBeDefined();
    expect(nproc, out).toBeDefined();
    const size = { memTotalMiB: Number(kb) / 1024, nproc: Number(nproc) };
    console.log(`${config.metadata.name}: guest MemTotal ${size.memTotalMiB.toFixed(1)} MiB, nproc ${size.nproc}`);
    return size;
  }

  /** The shim's own account of where the size came from (its log, one per pod). */
  function sizeLogged(): Record<string, unknown> {
    const log = path.join(podDirFor('k8s.io', cri.podId), 'shim.log');
    const line = fs
      .readFileSync(log, 'utf8')
      .split('\n')
      .find((l) => l.includes('"pod VM size"'));
    expect(line, `no "pod VM size" line in ${log}`).toBeDefined();
    return JSON.parse(line ?? '{}') as Record<string, unknown>;
  }

  /**
   * MemTotal is the guest's RAM less what its kernel keeps for itself (its image, struct pages, reserved
   * ranges): a few percent of it, never more than the RAM.
   */
  function expectRam(memTotalMiB: number, ramMiB: number): void {
    expect(memTotalMiB).toBeLessThanOrEqual(ramMiB);
    expect(memTotalMiB).toBeGreaterThan(ramMiB * 0.9);
  }

  it('gives a pod with a 768 MiB, 2 CPU limit a guest of 768 MiB plus the overhead, and 2 vCPUs', async () => {
    const limit = 768 * MiB;
    const config = sandboxConfig('vrun-sized', { cpuPeriod: 100_000, cpuQuota: 200_000, cpuShares: 2048, memoryLimitInBytes: limit });
    const guest = await guestOf(config);
    // containerd's own record of the sandbox's spec: the pod's resources as annotations.
    const bundle = JSON.parse(fs.readFileSync(path.join(cri.env.dir, 'state', 'io.containerd.runtime.v2.task', 'k8s.io', cri.podId, 'config.json'), 'utf8')) as { annotations: Record<string, string> };
    expect(bundle.annotations).toMatchObject({
      'io.kubernetes.cri.sandbox-memory': String(limit),
      'io.kubernetes.cri.sandbox-cpu-quota': '200000',
      'io.kubernetes.cri.sandbox-cpu-period': '100000',
    });
    expect(sizeLogged()).toMatchObject({ memoryMiB: guestMemoryMiB(limit), vcpus: 2, memoryFrom: 'pod resources', vcpusFrom: 'pod resources' });
    expectRam(guest.memTotalMiB, guestMemoryMiB(limit));
    expect(guest.memTotalMiB).toBeGreaterThan(DEFAULT_GUEST_MEMORY_MIB);
    expect(guest.nproc).toBe(2);
    await cri.endPod();
  });

  it('gives a pod without resources the runtime options\' size', async () => {
    const guest = await guestOf(sandboxConfig('vrun-unsized'));
    expect(sizeLogged()).toMatchObject({ memoryMiB: DEFAULT_POD_VM.memoryMiB, vcpus: DEFAULT_POD_VM.vcpus, memoryFrom: 'runtime options', vcpusFrom: 'runtime options' });
    expectRam(guest.memTotalMiB, DEFAULT_POD_VM.memoryMiB);
    expect(guest.nproc).toBe(DEFAULT_POD_VM.vcpus);
    await cri.endPod();
  });

  it('refuses a pod whose memory limit is negative, naming the annotation, before any VM boots', async () => {
    const err = await cri.env.call('RunPodSandbox', { config: sandboxConfig('vrun-negative', { memoryLimitInBytes: -1 }), runtimeHandler: 'vrun' }).then(
      () => undefined,
      (e: Error) => e,
    );
    console.log(`vrun-negative: RunPodSandbox refused: ${err?.message ?? ''}`);
    expect(err?.message, 'a negative memory limit was accepted').toContain('io.kubernetes.cri.sandbox-memory');
    expect(err?.message).toMatch(/negative/);
    expect(processesNaming(path.join(cri.runDir, 'shim'))).toEqual([]);
  });
});
