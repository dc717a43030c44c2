import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootGuestImage, type BootedGuest } from '../helpers/guest-runner.js';
import { ensureGuestImage } from '../../src/guest-image/image.js';

/** Parses the guest's self-check lines ("VRUN-CHECK key=value") from the console. */
function checks(consoleText: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of consoleText.matchAll(/^VRUN-CHECK ([a-z0-9-]+)=(.*)$/gm)) out.set(m[1] as string, (m[2] as string).trim());
  return out;
}

describe('guest image under QEMU TCG', () => {
  let guest: BootedGuest;
  let facts: Map<string, string>;
  let bootedAt: number;

  beforeAll(async () => {
    await ensureGuestImage();
    bootedAt = Date.now();
    guest = await bootGuestImage({ accel: 'tcg', cmdlineExtra: 'vrun.check=1 vrun.cmd=true', timeoutMs: 180_000 });
    facts = checks(guest.vm.console.recent(200));
  });
  afterAll(async () => {
    await guest?.dispose();
  });

  it('reaches the readiness line printed by the init', () => {
    expect(guest.guestUptimeS).toBeGreaterThan(0);
    expect(guest.vm.console.recent(200)).toMatch(/VRUN-READY/);
  });

  it('mounts cgroup v2 with the cpu, memory and pids controllers enabled for children', () => {
    expect(facts.get('cgroup2')).toBe('1');
    const controllers = (facts.get('cgroup-controllers') ?? '').split(',');
    for (const c of ['cpu', 'memory', 'pids', 'cpuset', 'io']) expect(controllers).toContain(c);
  });

  it('finds the virtio-mmio devices QEMU attached (virtio-rng is device id 4)', () => {
    expect(Number(facts.get('virtio-mmio-platform'))).toBeGreaterThanOrEqual(1);
    expect(facts.get('virtio-devices')).toMatch(/virtio\d+:0x0004/);
  });

  it('runs node -e inside the guest, the same node as the host', () => {
    expect(facts.get('node')).toBe(process.version);
  });

  it('has crun and sees both vCPUs', () => {
    expect(facts.get('crun')).toMatch(/^crun version \d+\.\d+/);
    expect(facts.get('nproc')).toBe('2');
  });

  it('starts with the host\'s wall-clock time (from the RTC under TCG), not at 1970', () => {
    const clock = Number(facts.get('clock'));
    expect(clock).toBeGreaterThanOrEqual(Math.floor(bootedAt / 1000) - 5);
    expect(clock).toBeLessThanOrEqual(Date.now() / 1000 + 2);
  });

  it('runs a different kernel than the host', async () => {
    const { release } = await import('node:os');
    expect(facts.get('kernel')).toMatch(/^6\.1\./);
    expect(facts.get('kernel')).not.toBe(release());
  });

  it('ends the VM when the init finishes, reporting the status it printed', async () => {
    const exit = await guest.vm.exited;
    expect(exit.code).toBe(0);
    expect(exit.guestStatus).toBe(0);
    expect(exit.end).toMatchObject({ kind: 'exit', guestStatus: 0 });
  });
});
