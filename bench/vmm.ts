import os from 'node:os';
import { projectRoot } from '../src/common/paths.js';
import { ensureGuestImage, ensureLabImage } from '../src/guest-image/image.js';
import { kvmPlace, runWithLinuxKvm } from '../src/kvm-lab/placement.js';

/**
 * Native VMM vs QEMU on the same KVM: port-I/O exit round trips per second with the same payload,
 * resident memory of the VMM process excluding guest RAM, boot of the guest image to its readiness
 * line, and guest-to-host throughput over the vrun.agent console port. Runs where /dev/kvm can run guests — on
 * this kind of host that is the KVM lab, so absolute numbers include nested emulation; the ratios
 * compare like with like.
 */
/** "0.91x", or "n/a" when either side has no number (a measurement that failed). */
function ratio(native: number | null | undefined, qemu: number | null | undefined): string {
  return typeof native === 'number' && typeof qemu === 'number' && Number.isFinite(native) && Number.isFinite(qemu) && qemu > 0 ? `${(native / qemu).toFixed(2)}x` : 'n/a';
}

export async function run(): Promise<void> {
  const iterations = Number(process.env.VRUN_BENCH_EXITS ?? 20000);
  if (kvmPlace() === 'lab') await ensureLabImage();
  const vcpus = Number(process.env.VRUN_BENCH_VCPUS ?? 2);
  if (kvmPlace() === 'lab') await ensureGuestImage();
  const load = os.loadavg();
  const res = await runWithLinuxKvm(
    `cd '${projectRoot()}' && node dist/bench/vmm/exit-bench.js ${iterations}; node dist/bench/vmm/boot-bench.js ${vcpus}`,
    { timeoutMs: 1_800_000 },
  );
  const line = /^VRUN-BENCH (.*)$/m.exec(res.stdout);
  if (!line) throw new Error(`exit benchmark printed no result (status ${res.status}): ${res.stderr.trim()}`);
  const r = JSON.parse(line[1]!) as Record<string, number>;
  const where = res.place === 'lab' ? 'in the KVM lab (nested, TCG-backed L1)' : 'on this host';
  process.stdout.write(`port-I/O exits ${where}, ${r.iterations} native / ${r.qemuIterations} qemu, to a port no device claims on qemu\n`);
  process.stdout.write(
    `  writes (native: posted to the device model): native VMM: ${r.nativeExitsPerSec}/s   qemu -enable-kvm: ${r.qemuExitsPerSec}/s   native/qemu = ${ratio(r.nativeExitsPerSec, r.qemuExitsPerSec)}\n`,
  );
  process.stdout.write(
    `  reads (round trip through the device model): native VMM: ${r.nativeReadsPerSec}/s   qemu -enable-kvm: ${r.qemuReadsPerSec}/s   native/qemu = ${ratio(r.nativeReadsPerSec, r.qemuReadsPerSec)}\n`,
  );
  process.stdout.write(`VMM resident memory excluding guest RAM\n`);
  process.stdout.write(`  native VMM (node): ${r.nativeRssKiB} KiB   qemu: ${r.qemuRssKiB} KiB   native/qemu = ${ratio(r.nativeRssKiB, r.qemuRssKiB)}\n`);
  const boot = /^VRUN-BOOTBENCH (.*)$/m.exec(res.stdout);
  if (!boot) throw new Error(`boot benchmark printed no result (status ${res.status}): ${res.stderr.trim()}`);
  const { nativeExits, nativeStreamError, jailedStreamError, qemuStreamError, ...b } = JSON.parse(boot[1]!) as Record<string, number> & {
    nativeExits?: unknown;
    nativeStreamError?: string;
    jailedStreamError?: string;
    qemuStreamError?: string;
  };
  process.stdout.write(`load average before the run: ${load.map((l) => l.toFixed(2)).join(' ')}, after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
  process.stdout.write(`boot of the guest image to its readiness line ${where}, ${b.vcpus} vCPUs (wall time from start)\n`);
  process.stdout.write(
    `  native VMM: ${b.nativeReadyMs} ms (guest uptime ${b.nativeGuestUptimeS} s)   qemu -enable-kvm microvm: ${b.qemuReadyMs} ms (guest uptime ${b.qemuGuestUptimeS} s)   native/qemu = ${ratio(b.nativeReadyMs, b.qemuReadyMs)}\n`,
  );
  // Wall time minus the guest's uptime: what each VMM spends before the guest's clock starts (process
  // start, loading kernel and initrd) plus getting the readiness line out.
  process.stdout.write(
    `  outside the guest's clock: native ${Math.round(b.nativeReadyMs! - b.nativeGuestUptimeS! * 1000)} ms (createVm ${b.nativeCreateMs} ms)   qemu ${Math.round(b.qemuReadyMs! - b.qemuGuestUptimeS! * 1000)} ms\n`,
  );
  process.stdout.write(`guest-to-host throughput over the vrun.agent virtio-console port (${b.streamMiB} MiB)\n`);
  process.stdout.write(
    `  native VMM: ${b.nativeStreamMiBPerSec} MiB/s   qemu: ${b.qemuStreamMiBPerSec} MiB/s   native/qemu = ${ratio(b.nativeStreamMiBPerSec, b.qemuStreamMiBPerSec)}\n`,
  );
  // What vrun pays for running the native VMM as a jailed process of its own (issue 21): the jailer, a node
  // start and the bundle's load, against the same machine run in this process.
  process.stdout.write(`the native VMM's jail: boot to readiness as vrun runs it (jailed process) vs the same machine in-process ${where}\n`);
  process.stdout.write(
    `  jailed: ${b.jailedReadyMs} ms (guest uptime ${b.jailedGuestUptimeS} s, outside it ${Math.round(b.jailedReadyMs! - b.jailedGuestUptimeS! * 1000)} ms)   in-process: ${b.nativeReadyMs} ms (outside the guest's clock ${Math.round(b.nativeReadyMs! - b.nativeGuestUptimeS! * 1000)} ms)   jailed/in-process = ${ratio(b.jailedReadyMs, b.nativeReadyMs)}\n`,
  );
  process.stdout.write(`  console stream: jailed ${b.jailedStreamMiBPerSec} MiB/s   in-process ${b.nativeStreamMiBPerSec} MiB/s   jailed/in-process = ${ratio(b.jailedStreamMiBPerSec, b.nativeStreamMiBPerSec)}\n`);
  if (nativeStreamError) process.stdout.write(`  native stream failed: ${nativeStreamError}\n`);
  if (jailedStreamError) process.stdout.write(`  jailed native stream failed: ${jailedStreamError}\n`);
  if (qemuStreamError) process.stdout.write(`  qemu stream failed: ${qemuStreamError}\n`);
  process.stdout.write(`native VMM exits up to readiness: ${JSON.stringify(nativeExits ?? 'not reported')}\n`);
}
