import { beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/common/paths.js';
import { ensureLabImage } from '../../src/guest-image/image.js';
import { runWithLinuxKvm } from '../../src/kvm-lab/placement.js';

/**
 * The native VMM on a real /dev/kvm: hand-assembled payloads in real and long mode (the self-check in
 * src/vmm/selfcheck/kvm-selfcheck.ts) run where KVM works — directly on hosts with VT-x/AMD-V, otherwise in the
 * KVM lab — and these tests assert on what the device models observed there.
 */

type Report = Record<string, unknown> & { name: string; error?: string };

const w = (offset: number, size: number, value: number) => ({ op: 'w', offset, size, value });
const r = (offset: number, size: number, value: number) => ({ op: 'r', offset, size, value });

describe('native VMM payloads on /dev/kvm', () => {
  const reports = new Map<string, Report>();
  let place = '';

  beforeAll(async () => {
    await ensureLabImage();
    const script = `cd '${projectRoot()}' && exec node dist/src/vmm/selfcheck/kvm-selfcheck.js`;
    const res = await runWithLinuxKvm(script, { timeoutMs: 900_000 });
    place = res.place;
    expect(res.kvm, `no /dev/kvm where the self-check ran\n${res.consoleLog}`).toBe(true);
    for (const line of res.stdout.split('\n')) {
      const m = /^VRUN-SELFCHECK (.*)$/.exec(line);
      if (m) {
        const rep = JSON.parse(m[1]!) as Report;
        reports.set(rep.name, rep);
      }
    }
    expect(reports.size, `self-check printed nothing (status ${res.status})\nstderr: ${res.stderr}\nconsole:\n${res.consoleLog}`).toBeGreaterThan(0);
  });

  const report = (name: string): Report => {
    const rep = reports.get(name);
    expect(rep, `scenario ${name} did not report (ran: ${[...reports.keys()].join(', ')}; place ${place})`).toBeDefined();
    expect(rep!.error).toBeUndefined();
    return rep!;
  };

  it('real mode: port and MMIO accesses reach the device models with width and data', () => {
    const rep = report('realMode');
    expect(rep.stops).toEqual([{ vcpu: 0, reason: 'stopped' }]);
    expect(rep.ports).toEqual([w(0, 1, 0x5a), w(2, 2, 0x1234), w(4, 4, 0xdeadbeef), r(8, 2, 0xf00d), w(6, 2, 0xf00d), w(4, 4, 0x8badf00d), w(0xf, 1, 0x0d)]);
    expect(rep.mmio).toEqual([w(0, 1, 0x11), w(2, 2, 0x2233), w(4, 4, 0x44556677), r(0x10, 4, 0x8badf00d)]);
    expect(rep.deviceError).toBeUndefined();
  });

  it("ends the whole machine when one vCPU triple-faults, while another still runs", () => {
    const rep = report('tripleFault');
    expect(rep.stops).toEqual([
      { vcpu: 0, reason: 'shutdown' },
      { vcpu: 1, reason: 'stopped' },
    ]);
    // Long before the scenario's own 20 s bound would have stopped the spinning vCPU.
    expect(rep.ms).toBeLessThan(10_000);
  });

  it('long mode: the same, with 8-byte MMIO split into halves', () => {
    const rep = report('longMode');
    expect(rep.stops).toEqual([{ vcpu: 0, reason: 'stopped' }]);
    expect(rep.ports).toEqual([
      w(0, 1, 0x5a),
      w(2, 2, 0x1234),
      w(4, 4, 0xdeadbeef),
      r(8, 4, 0xcafef00d),
      w(4, 4, 0xcafef00d),
      w(4, 4, 0x8badf00d),
      w(4, 4, 0x11223344),
      w(4, 4, 0x55667788),
      w(0xf, 1, 0x88),
    ]);
    expect(rep.mmio).toEqual([
      w(0, 1, 0x11),
      w(2, 2, 0x2233),
      w(4, 4, 0x44556677),
      w(8, 4, 0x44332211),
      w(0xc, 4, 0x88776655),
      r(0x10, 4, 0x8badf00d),
      r(0x18, 4, 0x11223344),
      r(0x1c, 4, 0x55667788),
    ]);
  });

  it('an irqfd-injected interrupt is taken by the guest', () => {
    const rep = report('irqfd');
    expect(rep.handled).toEqual([0x42]);
    expect(rep.stops).toEqual([{ vcpu: 0, reason: 'stopped' }]);
  });

  it('pause freezes the vCPU, its registers can be read, resume continues where it was', () => {
    const rep = report('pauseResume');
    expect(rep.runningStateError).toMatch(/running: pause it first/);
    expect(rep.afterPause).toBe(rep.frozenAt);
    // Paused after its last OUT, or one INC further: never anywhere else.
    expect([rep.lastWritten, ((rep.lastWritten as number) + 1) & 0xffff]).toContain(rep.raxWhilePaused);
    expect(rep.total as number).toBeGreaterThanOrEqual((rep.afterPause as number) + 100);
    expect(rep.sequential).toBe(true);
    expect(rep.stops).toEqual([{ vcpu: 0, reason: 'stopped' }]);
  });

  it('an ioeventfd catches its matching write without an exit; other values still exit', () => {
    const rep = report('ioeventfd');
    expect(rep.notified).toBe(1);
    expect(rep.unhandled).toBe(1);
  });

  it('ports with no device model are answered on the vCPU thread: all-ones reads, no exit to JS', () => {
    const rep = report('nativePorts');
    expect(rep.stops).toEqual([{ vcpu: 0, reason: 'stopped' }]);
    expect(rep.ports).toEqual([w(0, 1, 0xff), w(2, 2, 0xffff), w(0xf, 1, 0xff)]);
    expect(rep.pioNative).toBe(4);
    expect(rep.pioToJs).toBe(3);
  });

  it('a device model that throws stops the VM with its error', () => {
    const rep = report('deviceError');
    expect(rep.deviceError).toBe('device exploded');
    expect(rep.stops).toEqual([{ vcpu: 0, reason: 'stopped' }]);
  });

  it('bad arguments give errors that name the problem', () => {
    const rep = report('badArguments');
    expect(rep.oddMemory).toMatch(/not a positive multiple of 4 KiB/);
    expect(rep.noVcpus).toMatch(/at least 1/);
    expect(rep.noDevice).toMatch(/cannot open \/nonexistent\/kvm/);
    expect(rep.tooManyVcpus).toMatch(/allows at most \d+ vCPUs|createVcpu/);
    expect(rep.regionPastRam).toMatch(/region 0/);
  });

  it('50 create/run/destroy cycles leave fd and thread counts unchanged', () => {
    const rep = report('cycles') as Report & { before: { fds: number; threads: number }; after: { fds: number; threads: number } };
    expect(rep.reasons).toEqual(['stopped']);
    expect(rep.after.fds).toBe(rep.before.fds);
    expect(rep.after.threads).toBe(rep.before.threads);
  });
});
