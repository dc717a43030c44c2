import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadNative } from '../../src/common/native.js';
import type { VmEnd } from '../../src/vmm/backend.js';
import { decodeVcpuStop, VCPU_STOP_REASONS, type VcpuStop } from '../../src/vmm/kvm/native.js';
import { machineEndFromStops } from '../../src/vmm/machine.js';
import { nativeVmEnd } from '../../src/vmm/native-backend.js';
import { QemuVm, qemuVmEnd, type QemuExit } from '../../src/vmm/qemu/machine.js';

/**
 * Both backends put a VM's end in the same words (VmEnd). QEMU's side starts from what its process tells the
 * host (exit code or signal, stderr, the console); the native VMM's from the vCPU stop reasons the addon sends,
 * through the machine's end. The boots themselves are slow tests; here the inputs are real where that is cheap
 * (QEMU's own exit status and stderr, a child killed by a signal, console bytes through QemuVm) and literal
 * otherwise.
 */

const work = mkdtempSync(path.join(os.tmpdir(), 'vrun-vm-end-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** QemuVm around a stand-in for QEMU: `script` plays its console (stdout), stderr and exit. */
function fakeQemu(script: string): QemuVm {
  return QemuVm.start(
    { kernel: '/nonexistent', cmdline: '', vcpus: 1, memoryMiB: 64, accel: 'tcg' },
    { binary: '/bin/sh', wrap: () => ({ command: '/bin/sh', args: ['-c', script] }) },
  );
}

/** The native chain: stop numbers as the addon sends them, the machine's end, then the backend's. */
function nativeEnd(codes: number[], guestStatus?: number): VmEnd {
  return nativeVmEnd(machineEndFromStops(codes.map((c, vcpu) => decodeVcpuStop(vcpu, c, ''))), guestStatus);
}
const code = (reason: (typeof VCPU_STOP_REASONS)[number]) => VCPU_STOP_REASONS.indexOf(reason);

describe('QEMU: its end in the common words', () => {
  it('a real QEMU that cannot start is an error with its exit code and its own line from stderr', () => {
    const r = spawnSync('qemu-system-x86_64', ['-M', 'microvm', '-nodefaults', '-display', 'none', '-kernel', path.join(work, 'missing-kernel')], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).not.toBe(0);
    const end = qemuVmEnd({ code: r.status, signal: r.signal, stderr: r.stderr.trim() });
    expect(end).toMatchObject({ kind: 'error', code: r.status });
    expect(end.message).toMatch(new RegExp(`^QEMU exited with code ${r.status} \\(qemu(-system-x86_64)?: .*missing-kernel`));
  });

  it('the jailer\'s refusal (exit 125) is an error naming it', () => {
    const end = qemuVmEnd({ code: 125, signal: null, stderr: 'some noise\nvrun-jailer: cannot create cgroup /sys/fs/cgroup/vrun/x: Permission denied' });
    expect(end).toEqual({ kind: 'error', code: 125, message: 'QEMU exited with code 125 (vrun-jailer: cannot create cgroup /sys/fs/cgroup/vrun/x: Permission denied)' });
  });

  it('killed by a signal is "killed", with the signal', async () => {
    const vm = fakeQemu('echo "VRUN-READY 1.00"; exec sleep 60');
    await vm.console.waitFor(/VRUN-READY/, 10_000, 'readiness');
    const exit: QemuExit = await vm.kill();
    expect(exit.signal).toBe('SIGKILL');
    expect(exit.end).toEqual({ kind: 'killed', signal: 'SIGKILL', message: 'QEMU killed by SIGKILL' });
  });

  it('status 0 after the init printed its status is an exit with that status (the guest rebooted itself)', async () => {
    const exit = await fakeQemu('echo "VRUN-READY 1.00"; echo "VRUN-EXIT status=3"; echo "reboot: Restarting system"; exit 0').exited;
    expect(exit.end).toEqual({ kind: 'exit', code: 0, guestStatus: 3, message: 'the guest ended with status 3 (QEMU)' });
  });

  it('status 0 with no status printed is a reboot', async () => {
    const exit = await fakeQemu('echo "VRUN-READY 1.00"; exit 0').exited;
    expect(exit.end).toEqual({ kind: 'reboot', code: 0, message: 'the guest rebooted (QEMU)' });
  });

  it('a panic on the console is a panic (panic=-1 reboots, so QEMU ends with 0), its line kept short and printable', async () => {
    const exit = await fakeQemu(`printf '[    1.234] Kernel panic - not syncing: VFS: Unable to mount root fs\\033[31m%s\\n' "$(printf 'x%.0s' $(seq 1 400))"; exit 0`).exited;
    expect(exit.end.kind).toBe('panic');
    expect(exit.end.message).toMatch(/^guest kernel panic \(QEMU\): Kernel panic - not syncing: VFS: Unable to mount root fs\?\[31mx+$/);
    expect(exit.end.message.length).toBeLessThanOrEqual(250);
  });

  it('a panic wins over a status printed before it; a failure or a kill wins over both', () => {
    const seen = { guestStatus: 0, panicLine: 'Kernel panic - not syncing: Attempted to kill init!', stderr: '' };
    expect(qemuVmEnd({ ...seen, code: 0, signal: null }).kind).toBe('panic');
    expect(qemuVmEnd({ ...seen, code: 1, signal: null })).toMatchObject({ kind: 'error', code: 1, guestStatus: 0 });
    expect(qemuVmEnd({ ...seen, code: null, signal: 'SIGTERM' })).toMatchObject({ kind: 'killed', signal: 'SIGTERM', guestStatus: 0 });
  });
});

describe('native VMM: vCPU stop reasons across the addon boundary', () => {
  it('the addon and the TS side number the reasons alike', () => {
    const table = loadNative<{ vcpuStopReasons: Record<string, number> }>().vcpuStopReasons;
    expect(table).toEqual(Object.fromEntries(VCPU_STOP_REASONS.map((r, i) => [r, i])));
  });

  it('decodes known numbers, keeps an error\'s detail, and turns anything else into an error naming it', () => {
    expect(decodeVcpuStop(1, code('shutdown'), '')).toEqual({ vcpu: 1, reason: 'shutdown' });
    expect(decodeVcpuStop(0, code('error'), 'KVM_RUN failed: Bad address')).toEqual({ vcpu: 0, reason: 'error', detail: 'KVM_RUN failed: Bad address' });
    for (const bad of [VCPU_STOP_REASONS.length, -1, 1.5, '2', undefined]) {
      const stop: VcpuStop = decodeVcpuStop(0, bad, '');
      expect(stop.reason).toBe('error');
      expect(stop.detail).toContain(`unknown vCPU stop reason ${String(bad)}`);
    }
  });

  it('the machine ends as the stops say: failures first, then crash, reset, poweroff', () => {
    const stops = (...reasons: VcpuStop['reason'][]): VcpuStop[] => reasons.map((reason, vcpu) => ({ vcpu, reason }));
    expect(machineEndFromStops(stops('shutdown', 'stopped'))).toEqual({ kind: 'reboot' });
    expect(machineEndFromStops(stops('stopped', 'reset'))).toEqual({ kind: 'reboot' });
    expect(machineEndFromStops(stops('poweroff', 'stopped'))).toEqual({ kind: 'poweroff' });
    expect(machineEndFromStops(stops('crash', 'stopped'))).toMatchObject({ kind: 'panic' });
    expect(machineEndFromStops(stops('stopped', 'destroyed', 'hlt'))).toEqual({ kind: 'stopped' });
    expect(machineEndFromStops([{ vcpu: 0, reason: 'shutdown' }, { vcpu: 1, reason: 'error', detail: 'entry failed, hardware reason 7' }])).toEqual({
      kind: 'error',
      message: 'vCPU 1: entry failed, hardware reason 7',
    });
    expect(machineEndFromStops(stops('stopped'), 'virtio-mmio: queue 0 out of range')).toEqual({ kind: 'error', message: 'device model failed: virtio-mmio: queue 0 out of range' });
  });
});

describe('native VMM: its end in the common words', () => {
  it('a triple fault (the guest\'s reboot=t) after the init printed its status is an exit with that status', () => {
    expect(nativeEnd([code('shutdown'), code('stopped')], 0)).toEqual({ kind: 'exit', guestStatus: 0, message: 'the guest ended with status 0 (native VMM)' });
  });

  it('a reboot or poweroff with no status printed stays one', () => {
    expect(nativeEnd([code('reset')])).toEqual({ kind: 'reboot', message: 'the guest rebooted (native VMM)' });
    expect(nativeVmEnd({ kind: 'poweroff' }, undefined)).toEqual({ kind: 'poweroff', message: 'the guest powered off (native VMM)' });
  });

  it('the exit port\'s status is an exit', () => {
    expect(nativeVmEnd({ kind: 'exit', status: 7 }, undefined)).toEqual({ kind: 'exit', guestStatus: 7, message: 'the guest ended with status 7 (native VMM)' });
  });

  it('a panic keeps the kernel\'s line, short and printable (it comes from the guest)', () => {
    const e = nativeVmEnd({ kind: 'panic', line: `Kernel panic - not syncing: Attempted to kill init!\u001b[31m${'x'.repeat(5000)}` }, undefined);
    expect(e.kind).toBe('panic');
    expect(e.message).toMatch(/^guest kernel panic \(native VMM\): Kernel panic - not syncing: Attempted to kill init!\?\[31mx+$/);
    expect(e.message.length).toBeLessThanOrEqual(250);
  });

  it('a stop by the host is "killed"; a failed vCPU or device model is an error', () => {
    expect(nativeEnd([code('stopped'), code('stopped')])).toEqual({ kind: 'killed', message: 'the native VMM was stopped' });
    const failed = nativeVmEnd(machineEndFromStops([decodeVcpuStop(0, code('error'), 'KVM_RUN failed: Bad address')]), undefined);
    expect(failed).toEqual({ kind: 'error', message: 'the native VMM failed: vCPU 0: KVM_RUN failed: Bad address' });
  });
});

describe('both backends tell the same guest events alike', () => {
  const cases: { event: string; qemu: Parameters<typeof qemuVmEnd>[0]; native: VmEnd }[] = [
    { event: 'init printed status 2, then reboot -f', qemu: { code: 0, signal: null, guestStatus: 2, stderr: '' }, native: nativeEnd([code('shutdown')], 2) },
    { event: 'a reset with nothing printed', qemu: { code: 0, signal: null, stderr: '' }, native: nativeEnd([code('shutdown')]) },
    { event: 'a kernel panic', qemu: { code: 0, signal: null, panicLine: 'Kernel panic - not syncing: x', stderr: '' }, native: nativeVmEnd({ kind: 'panic', line: 'Kernel panic - not syncing: x' }, undefined) },
    { event: 'the host ended the VM', qemu: { code: null, signal: 'SIGKILL', stderr: '' }, native: nativeEnd([code('stopped')]) },
  ];
  for (const c of cases) {
    it(c.event, () => {
      const q = qemuVmEnd(c.qemu);
      expect(q.kind).toBe(c.native.kind);
      expect(q.guestStatus).toBe(c.native.guestStatus);
    });
  }
});
