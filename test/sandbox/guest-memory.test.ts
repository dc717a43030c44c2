import { describe, expect, it } from 'vitest';
import { DEFAULT_GUEST_MEMORY_MIB, GUEST_OVERHEAD_MIB, MIN_GUEST_MEMORY_MIB, guestMemoryMiB } from '../../src/sandbox/guest-memory.js';

describe('guestMemoryMiB', () => {
  it('gives a pod without a limit the default', () => {
    expect(guestMemoryMiB(undefined)).toBe(DEFAULT_GUEST_MEMORY_MIB);
    expect(guestMemoryMiB(0)).toBe(DEFAULT_GUEST_MEMORY_MIB);
  });

  it('sizes the guest as the limit (rounded up to 2 MiB, where the userland mapping starts) plus the fixed overhead', () => {
    expect(guestMemoryMiB(1024 * 2 ** 20)).toBe(1024 + GUEST_OVERHEAD_MIB);
    expect(guestMemoryMiB(1024 * 2 ** 20 + 1)).toBe(1026 + GUEST_OVERHEAD_MIB);
    expect(guestMemoryMiB(1025 * 2 ** 20)).toBe(1026 + GUEST_OVERHEAD_MIB);
    expect(guestMemoryMiB(1025 * 2 ** 20) % 2).toBe(0);
  });

  it('never goes below the minimum the agent needs', () => {
    expect(guestMemoryMiB(6 * 2 ** 20)).toBe(MIN_GUEST_MEMORY_MIB);
  });
});
