import { describe, expect, it } from 'vitest';
import { watchTransfers } from '../../bench/vmm/net-lab.js';

/**
 * The network lab's watchdog (bench/vmm/net-lab.ts): it reads the native VMM's diagnosis while the guest
 * transfers, and hands it back once the virtio-net device's byte counters stop moving, so that a stopped
 * transfer is diagnosed (and retried only when the diagnosis puts it below the VMM) instead of running into the
 * lab's 25-minute limit. Here the diagnoses come from a scripted sequence of counter values.
 */

const limits = { windowMs: 60, minBytes: 1000, everyMs: 10 };

function vmReporting(bytes: (n: number) => number | undefined) {
  let n = 0;
  return {
    calls: () => n,
    diagnose: () => {
      const b = bytes(n++);
      if (b === undefined) return Promise.resolve({ virtio: [] });
      return Promise.resolve({ stuckInKvm: null, virtio: [{ device: 'virtio-mmio:net:tap0', state: { rxBytes: b, txBytes: 5 } }] });
    },
  };
}

describe('the network lab watchdog', () => {
  it('returns the diagnosis once the counters move less than the minimum over the window', async () => {
    const vm = vmReporting((n) => Math.min(n, 10) * 5000);
    const d = await watchTransfers(vm, () => true, limits);
    expect(d).toMatchObject({ stuckInKvm: null });
    // 10 samples of progress, then at least a window's worth (6 samples) of none.
    expect(vm.calls()).toBeGreaterThanOrEqual(16);
  });

  it('does not fire while the counters keep moving, and ends when the transfers do', async () => {
    const vm = vmReporting((n) => n * 5000);
    let running = true;
    setTimeout(() => (running = false), 300);
    expect(await watchTransfers(vm, () => running, limits)).toBeUndefined();
    expect(vm.calls()).toBeGreaterThan(10);
  });

  it('counts a trickle below the minimum as stopped (TCP retransmissions)', async () => {
    const vm = vmReporting((n) => 100_000 + n * 50);
    expect(await watchTransfers(vm, () => true, limits)).toBeDefined();
  });

  it('gives up without a verdict when the VMM has no net device counters to read', async () => {
    const vm = vmReporting(() => undefined);
    expect(await watchTransfers(vm, () => true, limits)).toBeUndefined();
    expect(vm.calls()).toBe(1);
  });
});
