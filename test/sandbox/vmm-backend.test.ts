import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { hasHardwareVirtualization } from '../../src/kvm-lab/placement.js';
import { nativeVmExit } from '../../src/sandbox/native-backend.js';
import { chooseBackend, decideBackend, nativeVmmAvailable } from '../../src/sandbox/vmm-backend.js';

/** Backend choice and how a native VM's end reads to the sandbox (the boots themselves are slow tests). */

const linuxKvm = existsSync('/dev/kvm') && hasHardwareVirtualization();

describe('backend choice', () => {
  it('counts the native VMM when its addon is built (this checkout builds it)', () => {
    expect(nativeVmmAvailable()).toBe(true);
  });

  it('asks whether the native VMM is available only when KVM could run it', () => {
    const probe = () => {
      throw new Error('probed');
    };
    for (const choice of ['qemu', 'qemu-tcg'] as const) expect(decideBackend(choice, { nativeAvailable: probe }).backend).toBe('qemu');
    if (!linuxKvm) expect(decideBackend('auto', { nativeAvailable: probe })).toMatchObject({ backend: 'qemu', accel: 'tcg' });
    else expect(() => decideBackend('auto', { nativeAvailable: probe })).toThrow('probed');
  });

  it('auto picks the native VMM exactly where hardware virtualization is usable', () => {
    expect(chooseBackend('auto')).toEqual(linuxKvm ? { backend: 'native', accel: 'kvm' } : expect.objectContaining({ backend: 'qemu', accel: 'tcg' }));
  });

  it('--vmm native: the native VMM, or a clear error naming what the host lacks', () => {
    if (linuxKvm) expect(chooseBackend('native')).toEqual({ backend: 'native', accel: 'kvm' });
    else expect(() => chooseBackend('native')).toThrow(/^--vmm native needs hardware virtualization: this host has /);
    expect(() => decideBackend('native', { nativeAvailable: false })).toThrow(/native VMM is not available in this build/);
  });
});

describe('native VM end', () => {
  it('a guest reboot or poweroff carries the status the init printed', () => {
    expect(nativeVmExit({ kind: 'reboot' }, 3)).toMatchObject({ reason: 'reboot', guestStatus: 3, panic: false });
    expect(nativeVmExit({ kind: 'poweroff' }, 0)).toMatchObject({ reason: 'reboot', guestStatus: 0, panic: false });
    expect(nativeVmExit({ kind: 'exit', status: 7 }, undefined)).toMatchObject({ reason: 'reboot', guestStatus: 7 });
  });

  it('a panic is reported as one with the kernel\'s line, kept short and printable (it comes from the guest)', () => {
    const e = nativeVmExit({ kind: 'panic', line: `Kernel panic - not syncing: Attempted to kill init!\u001b[31m${'x'.repeat(5000)}` }, undefined);
    expect(e.panic).toBe(true);
    expect(e.reason).toBe('error');
    expect(e.detail).toMatch(/^native VMM: Kernel panic - not syncing: Attempted to kill init!\?\[31mx+$/);
    expect(e.detail.length).toBeLessThanOrEqual(250);
  });

  it('a stop by the host and a failed device model are told apart', () => {
    expect(nativeVmExit({ kind: 'stopped' }, undefined)).toMatchObject({ reason: 'killed', panic: false });
    expect(nativeVmExit({ kind: 'error', message: 'vCPU 0: error: EFAULT' }, undefined)).toMatchObject({ reason: 'error', detail: 'the native VMM failed: vCPU 0: error: EFAULT' });
  });
});
