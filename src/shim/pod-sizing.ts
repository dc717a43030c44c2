import { GUEST_OVERHEAD_MIB, guestMemoryMiB } from '../sandbox/guest-memory.js';
import { Code, TtrpcError } from '../ttrpc/status.js';
import { MAX_POD_VM_MIB, type PodVmConfig } from './runtime-options.js';

/**
 * A CRI pod's VM sized from the pod's own resources ("sandbox sizing", as Kata does). containerd's CRI plugin
 * (1.6: pkg/cri/server/sandbox_run_linux.go) writes these annotations (and sandbox-cpu-shares, which
 * means nothing to a VM's size) on the sandbox container's spec
 * whenever kubelet sends LinuxPodSandboxConfig.resources (the sum of the containers' limits, without the
 * RuntimeClass overhead), each the decimal int64 of its field, "0" for a field kubelet left unset; without
 * resources there are none. They can also come from a pod annotation containerd passes through
 * (`pod_annotations`), so they are checked like any other input from the pod.
 */
export const SANDBOX_MEMORY = 'io.kubernetes.cri.sandbox-memory';
export const SANDBOX_CPU_QUOTA = 'io.kubernetes.cri.sandbox-cpu-quota';
export const SANDBOX_CPU_PERIOD = 'io.kubernetes.cri.sandbox-cpu-period';

/** In bytes: a limit whose VM (limit + overhead) would be larger than the runtime options allow is refused up front. */
const MEMORY_RANGE = [1, (MAX_POD_VM_MIB - GUEST_OVERHEAD_MIB) * 2 ** 20] as const;
/** The CFS period the kernel accepts, in µs (1 ms .. 1 s); kubelet sends 100000. */
const PERIOD_RANGE = [1000, 1_000_000] as const;
/** A quota below 1 ms is refused by the kernel; above 1024 CPUs' worth it is absurd. */
const QUOTA_RANGE = [1000, 1024 * 1_000_000] as const;
/** The same bounds the runtime options allow (runtime-options.ts). */
const MAX_VCPUS = 16;

export type SizeSource = 'pod resources' | 'runtime options';

export interface PodVmSize extends PodVmConfig {
  memoryFrom: SizeSource;
  vcpusFrom: SizeSource;
}

function bad(msg: string): TtrpcError {
  return new TtrpcError(Code.INVALID_ARGUMENT, `pod sandbox sizing: ${msg}`);
}

/**
 * An annotation's value as an integer, 0 when absent or "0" (unset); any other value outside `range`, or not a
 * decimal integer, is an INVALID_ARGUMENT naming the annotation.
 */
function count(annotations: Record<string, unknown>, name: string, [min, max]: readonly [number, number]): number {
  const v = annotations[name];
  if (v === undefined) return 0;
  if (typeof v !== 'string' || !/^-?[0-9]{1,20}$/.test(v)) throw bad(`annotation ${name} must be a decimal integer (at most 20 digits), got ${JSON.stringify(v).slice(0, 64)}`);
  const n = Number(v);
  if (n < 0) throw bad(`annotation ${name} must not be negative, got ${v}`);
  if (n !== 0 && (n < min || n > max)) throw bad(`annotation ${name} is ${v}, outside ${min}..${max}`);
  return n;
}

/**
 * The pod VM's memory and vCPUs: from the sandbox's annotations where they give a limit, else `defaults`
 * (the runtime options). `annotations` is the sandbox container's spec annotations; for any other
 * container (and `ctr run`) pass undefined.
 */
export function podVmSize(defaults: PodVmConfig, annotations: unknown): PodVmSize {
  const a = typeof annotations === 'object' && annotations !== null && !Array.isArray(annotations) ? (annotations as Record<string, unknown>) : {};
  const memory = count(a, SANDBOX_MEMORY, MEMORY_RANGE);
  const quota = count(a, SANDBOX_CPU_QUOTA, QUOTA_RANGE);
  const period = count(a, SANDBOX_CPU_PERIOD, PERIOD_RANGE);
  const byMemory = memory > 0;
  const byCpu = quota > 0 && period > 0;
  return {
    ...defaults,
    memoryMiB: byMemory ? guestMemoryMiB(memory) : defaults.memoryMiB,
    // 1.5 CPUs need 2 vCPUs to be usable; each container's own CPU limit still holds in the guest's cgroups.
    vcpus: byCpu ? Math.min(MAX_VCPUS, Math.max(1, Math.ceil(quota / period))) : defaults.vcpus,
    memoryFrom: byMemory ? 'pod resources' : 'runtime options',
    vcpusFrom: byCpu ? 'pod resources' : 'runtime options',
  };
}
