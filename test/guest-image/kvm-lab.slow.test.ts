import { describe, expect, it, beforeAll } from 'vitest';
import { ensureGuestImage, ensureLabImage, type ImageManifest } from '../../src/guest-image/image.js';
import { runInLab } from '../../src/kvm-lab/lab.js';
import { qemuArgs } from '../../src/vmm/qemu/command.js';
import { BASE_CMDLINE } from '../../src/guest-image/guest-contract.js';
import { hasHardwareVirtualization } from '../../src/vmm/host-capabilities.js';
import { isL1KernelFailure } from '../helpers/l1-failure.js';

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

describe('KVM lab', () => {
  let guest: ImageManifest;
  beforeAll(async () => {
    guest = await ensureGuestImage();
    await ensureLabImage();
  });

  it('decides placement from the CPU flags', () => {
    expect(hasHardwareVirtualization('flags\t\t: fpu vme svm lm\n')).toBe(true);
    expect(hasHardwareVirtualization('flags\t\t: fpu vmx\n')).toBe(true);
    expect(hasHardwareVirtualization('flags\t\t: fpu sse2 lm\n')).toBe(false);
  });

  it('boots the guest image with qemu -enable-kvm inside L1 (L2) to the readiness line', async () => {
    // The same command line the qemu backend uses, with KVM acceleration: no TCG fallback is possible.
    // Two vCPUs, so SMP bring-up under nested KVM is covered too.
    const args = qemuArgs({
      kernel: guest.kernel,
      initrd: guest.initrd,
      cmdline: `${BASE_CMDLINE} vrun.check=1 vrun.cmd=true`,
      vcpus: 2,
      memoryMiB: 512,
      accel: 'kvm',
    });
    // An L2 guest whose kernel reports an RCU stall (one vCPU stopped taking interrupts, NMIs included, early in
    // boot) is run again, at most twice, and the output says so. This stall is not ours to fix here: stock QEMU is
    // the L2 VMM in this test, and the same stall hits our native VMM in the lab at about the same rate, so its
    // cause lies below both VMMs, in L1's KVM running on L0's TCG (see the README's native VMM row).
    const script = [
      'ls -l /dev/kvm',
      'echo "vgif=$(cat /sys/module/kvm_amd/parameters/vgif)"',
      'attempt=1',
      'while :; do',
      `  start=$(cut -d' ' -f1 /proc/uptime)`,
      // -d cpu_reset: when the guest dies early (QEMU ends with status 0 on a guest reset, as it did once in
      // 21 first boots of a fresh L1 here), the log shows the reset and the vCPU state at that moment.
      `  timeout 240 qemu-system-x86_64 ${args.map(shellQuote).join(' ')} -d cpu_reset -D l2-qemu.log > l2-console.log 2>&1 &`,
      '  qemu=$!',
      '  stalled=',
      '  while kill -0 $qemu 2>/dev/null; do',
      "    grep -qs 'rcu_sched detected stalls' l2-console.log && { stalled=1; kill $qemu; }",
      '    sleep 1',
      '  done',
      '  wait $qemu && st=0 || st=$?',
      '  echo "qemu exit $st"',
      `  end=$(cut -d' ' -f1 /proc/uptime)`,
      '  echo "l2-seconds $start $end"',
      '  [ -n "$stalled" ] && [ $attempt -lt 3 ] || break',
      '  echo "VRUN-RETRY L2 boot $attempt: $(grep -m1 -A1 \'rcu_sched detected stalls\' l2-console.log | tr -s \'\\n \' \' \')"',
      '  attempt=$((attempt + 1))',
      'done',
      'grep -E "VRUN-(READY|CHECK|EXIT)" l2-console.log || { tail -40 l2-console.log; echo "--- l2-qemu.log"; tail -60 l2-qemu.log; }',
    ].join('\n');
    // L1 itself is stock Linux KVM under L0's TCG, and runs only stock QEMU here: when L1's own kernel oopses
    // (seen once in CI: a fault in its entry code while L2 ran) the lab is run again, at most once, and says so.
    let r: Awaited<ReturnType<typeof runInLab>> | undefined;
    for (let attempt = 1; r === undefined; attempt++) {
      try {
        r = await runInLab({ script, timeoutMs: 900_000 });
      } catch (err) {
        if (!isL1KernelFailure((err as Error).message) || attempt >= 2) throw err;
        console.log(`KVM lab: retried after L1's own kernel failed (below the VMM): ${(err as Error).message.split('\n')[0] ?? ''}`);
      }
    }
    expect(r.kvm, `L1 has no /dev/kvm\n${r.consoleLog}`).toBe(true);
    // The whole output on failure (a toMatch message would cut it): the L2 console's and QEMU's own log tails.
    expect(/VRUN-READY/.test(r.stdout), `stdout:\n${r.stdout}\nstderr: ${r.stderr}\nconsole:\n${r.consoleLog}`).toBe(true);
    // L1's KVM runs without virtual GIF: with it, an L2 vCPU now and then stops taking interrupts (see lab.ts).
    expect(r.stdout).toMatch(/^vgif=(0|N)$/m);
    expect(r.stdout).toMatch(/VRUN-CHECK cgroup2=1/);
    expect(r.stdout).toMatch(/VRUN-CHECK nproc=2/);
    expect(r.stdout).toMatch(/VRUN-EXIT status=0/);
    for (const m of r.stdout.matchAll(/^VRUN-RETRY (.*)$/gm)) console.log(`KVM lab: retried after an RCU stall in L2 (below the VMM): ${m[1]}`);
    const times = [...r.stdout.matchAll(/l2-seconds ([\d.]+) ([\d.]+)/g)].at(-1);
    console.log(`KVM lab: L1 ready after ${r.l1ReadyMs} ms; L2 (qemu -enable-kvm) ran for ${times ? (Number(times[2]) - Number(times[1])).toFixed(1) : '?'} s of L1 time`);
  });
});
