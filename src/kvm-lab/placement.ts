import { spawnSync } from 'node:child_process';
import { hasHardwareVirtualization } from '../vmm/host-capabilities.js';
import { type LabResult, runInLab } from './lab.js';

export type KvmPlace = 'direct' | 'lab';

export function kvmPlace(): KvmPlace {
  return hasHardwareVirtualization() ? 'direct' : 'lab';
}

/**
 * Runs a shell script that needs a Linux-capable /dev/kvm: directly where the host has hardware
 * virtualization, otherwise inside the KVM lab. Same result shape either way.
 */
export async function runWithLinuxKvm(script: string, opts: { timeoutMs?: number; memoryMiB?: number } = {}): Promise<LabResult & { place: KvmPlace }> {
  if (kvmPlace() === 'direct') {
    const started = Date.now();
    const r = spawnSync('/bin/sh', ['-c', script], { encoding: 'utf8', timeout: opts.timeoutMs ?? 600_000, maxBuffer: 64 << 20 });
    return {
      place: 'direct',
      status: r.status ?? 128,
      stdout: r.stdout ?? '',
      stderr: r.stderr ?? '',
      l1ReadyMs: 0,
      commandMs: Date.now() - started,
      kvm: true,
      consoleLog: '',
    };
  }
  return { place: 'lab', ...(await runInLab({ script, timeoutMs: opts.timeoutMs, memoryMiB: opts.memoryMiB })) };
}
