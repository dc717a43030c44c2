/** A CRI pod's VM size from the sandbox's annotations (containerd's sandbox-memory / cpu-quota / cpu-period). */
import { describe, expect, it } from 'vitest';
import { GUEST_OVERHEAD_MIB, guestMemoryMiB } from '../../src/sandbox/guest-memory.js';
import { SANDBOX_CPU_PERIOD, SANDBOX_CPU_QUOTA, SANDBOX_MEMORY, podVmSize } from '../../src/shim/pod-sizing.js';
import { DEFAULT_POD_VM, type PodVmConfig } from '../../src/shim/runtime-options.js';
import { Code, TtrpcError } from '../../src/ttrpc/status.js';

const MiB = 2 ** 20;
const options: PodVmConfig = { vmm: 'qemu', memoryMiB: 700, vcpus: 3 };
/** What containerd 1.6 writes for a pod whose containers' limits sum to `memory` bytes and `cpus` CPUs. */
const cri = (memory: number, cpus: number) => ({
  [SANDBOX_MEMORY]: String(memory),
  [SANDBOX_CPU_QUOTA]: String(cpus * 100_000),
  [SANDBOX_CPU_PERIOD]: '100000',
  'io.kubernetes.cri.sandbox-cpu-shares': '2',
  'io.kubernetes.cri.container-type': 'sandbox',
});

function refusal(annotations: Record<string, string>): TtrpcError {
  try {
    podVmSize(options, annotations);
  } catch (err) {
    if (err instanceof TtrpcError) return err;
    throw err;
  }
  throw new Error(`accepted ${JSON.stringify(annotations)}`);
}

describe('pod VM sizing from the CRI sandbox annotations', () => {
  it('sizes memory as the pod limit plus the guest overhead, and vCPUs as the CPU limit rounded up', () => {
    const s = podVmSize(options, cri(768 * MiB, 2));
    expect(s).toEqual({ vmm: 'qemu', memoryMiB: 768 + GUEST_OVERHEAD_MIB, vcpus: 2, memoryFrom: 'pod resources', vcpusFrom: 'pod resources' });
    expect(podVmSize(options, { ...cri(100 * MiB + 1, 1), [SANDBOX_CPU_QUOTA]: '150000' })).toMatchObject({ memoryMiB: guestMemoryMiB(100 * MiB + 1), vcpus: 2 });
    // A tiny limit still leaves the agent room; a fraction of a CPU is one vCPU; more than 16 CPUs are 16.
    expect(podVmSize(options, { ...cri(4 * MiB, 1), [SANDBOX_CPU_QUOTA]: '1000' })).toMatchObject({ memoryMiB: guestMemoryMiB(4 * MiB), vcpus: 1 });
    expect(podVmSize(options, cri(MiB, 64)).vcpus).toBe(16);
  });

  it('keeps the runtime options without annotations, for another container, and where kubelet left a field 0', () => {
    const defaults = { ...options, memoryFrom: 'runtime options', vcpusFrom: 'runtime options' };
    expect(podVmSize(options, undefined)).toEqual(defaults);
    expect(podVmSize(options, {})).toEqual(defaults);
    expect(podVmSize(options, cri(0, 0))).toEqual(defaults);
    expect(podVmSize(DEFAULT_POD_VM, { 'io.kubernetes.cri.container-type': 'sandbox' })).toMatchObject({ memoryMiB: 512, vcpus: 1 });
    // Memory without a CPU limit (quota 0, period 100000) and the other way round: each from where it was given.
    expect(podVmSize(options, cri(256 * MiB, 0))).toMatchObject({ memoryMiB: 256 + GUEST_OVERHEAD_MIB, vcpus: 3, memoryFrom: 'pod resources', vcpusFrom: 'runtime options' });
    expect(podVmSize(options, cri(0, 4))).toMatchObject({ memoryMiB: 700, vcpus: 4, memoryFrom: 'runtime options', vcpusFrom: 'pod resources' });
    expect(podVmSize(options, { [SANDBOX_CPU_QUOTA]: '200000' })).toMatchObject({ vcpus: 3, vcpusFrom: 'runtime options' });
  });

  it('refuses a value that is not a decimal integer, negative or absurd with INVALID_ARGUMENT naming the annotation', () => {
    const cases: [Record<string, string>, string, RegExp][] = [
      [{ [SANDBOX_MEMORY]: '1e9' }, SANDBOX_MEMORY, /decimal integer/],
      [{ [SANDBOX_MEMORY]: ' 1024' }, SANDBOX_MEMORY, /decimal integer/],
      [{ [SANDBOX_MEMORY]: '0x400' }, SANDBOX_MEMORY, /decimal integer/],
      [{ [SANDBOX_MEMORY]: '' }, SANDBOX_MEMORY, /decimal integer/],
      [{ [SANDBOX_MEMORY]: '9'.repeat(30) }, SANDBOX_MEMORY, /decimal integer/],
      [{ [SANDBOX_MEMORY]: '-1' }, SANDBOX_MEMORY, /negative/],
      [{ [SANDBOX_MEMORY]: String(2 ** 40 + 1) }, SANDBOX_MEMORY, /outside/],
      // One byte more than the largest VM the runtime options allow, less the guest's overhead.
      [{ [SANDBOX_MEMORY]: String((65536 - 160) * 2 ** 20 + 1) }, SANDBOX_MEMORY, /outside/],
      [{ ...cri(MiB, 1), [SANDBOX_CPU_QUOTA]: '-100000' }, SANDBOX_CPU_QUOTA, /negative/],
      [{ ...cri(MiB, 1), [SANDBOX_CPU_QUOTA]: '999' }, SANDBOX_CPU_QUOTA, /outside/],
      [{ ...cri(MiB, 1), [SANDBOX_CPU_QUOTA]: String(2 ** 53) }, SANDBOX_CPU_QUOTA, /outside/],
      [{ ...cri(MiB, 1), [SANDBOX_CPU_PERIOD]: '10' }, SANDBOX_CPU_PERIOD, /outside/],
      [{ ...cri(MiB, 1), [SANDBOX_CPU_PERIOD]: '2000000' }, SANDBOX_CPU_PERIOD, /outside/],
      [{ ...cri(MiB, 1), [SANDBOX_CPU_PERIOD]: '1.5' }, SANDBOX_CPU_PERIOD, /decimal integer/],
    ];
    for (const [annotations, name, why] of cases) {
      const err = refusal(annotations);
      expect(err.code, JSON.stringify(annotations)).toBe(Code.INVALID_ARGUMENT);
      expect(err.message).toContain(name);
      expect(err.message).toMatch(why);
    }
    // Not a string at all (a hand-written config.json): named too.
    expect(() => podVmSize(options, { [SANDBOX_MEMORY]: 1024 })).toThrow(new RegExp(`${SANDBOX_MEMORY}.*decimal integer`));
  });
});
