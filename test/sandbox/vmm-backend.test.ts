import { describe, expect, it } from 'vitest';
import { chooseBackend, decideBackend, nativeVmmAvailable } from '../../src/vmm/backend.js';
import { linuxKvmUsable } from '../../src/vmm/host-capabilities.js';

/**
 * The backend choice the sandbox makes (the boots themselves are slow tests; how each backend reports a VM's
 * end is test/vmm/vm-end.test.ts).
 */

const linuxKvm = linuxKvmUsable();

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
