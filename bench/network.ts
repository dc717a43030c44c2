import os from 'node:os';
import { projectRoot } from '../src/common/paths.js';
import { ensureGuestImage, ensureLabImage } from '../src/guest-image/image.js';
import { kvmPlace, runWithLinuxKvm } from '../src/kvm-lab/placement.js';
import type { NetLabReport } from './vmm/net-lab.js';

/**
 * TCP throughput over a pod's network, native virtio-net vs QEMU's virtio-net (`-enable-kvm`, userspace
 * tap backend, vhost off as in production), both on the same tap setup (src/network/tap.ts: a tap next to
 * a veth with tc redirects both ways, the veth's far end in a peer namespace) and the same guest image. One
 * run boots each VMM in turn (bench/vmm/net-lab.ts); the guest sends and receives VRUN_BENCH_NET_MIB MiB
 * with busybox nc, the peer (node) times each transfer. Where /dev/kvm can run guests only inside the KVM
 * lab (this host), absolute numbers include nested emulation; the ratios compare like with like.
 */

const MIB = Number(process.env.VRUN_BENCH_NET_MIB ?? 32);

function ratio(native: number | undefined, qemu: number | undefined): string {
  return native !== undefined && qemu !== undefined && qemu > 0 ? `${(native / qemu).toFixed(2)}x` : 'n/a';
}

export async function run(): Promise<void> {
  await ensureGuestImage();
  if (kvmPlace() === 'lab') await ensureLabImage();
  const load = os.loadavg();
  const res = await runWithLinuxKvm(`cd '${projectRoot()}' && node dist/bench/vmm/net-lab.js --mib ${MIB} native qemu`, { timeoutMs: 3_000_000 });
  printThroughput(res, MIB);
  process.stdout.write(`load average before the run: ${load.map((l) => l.toFixed(2)).join(' ')}, after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
}

/** The lab run's VRUN-NETLAB lines as MB/s per VMM and direction, with the ratios. */
export function printThroughput(res: { stdout: string; stderr: string; status: number; place: string }, mib: number): void {
  const reps = [...res.stdout.matchAll(/^VRUN-NETLAB (.*)$/gm)].map((m) => JSON.parse(m[1]!) as NetLabReport);
  const native = reps.find((r) => r.vmm === 'native');
  const qemu = reps.find((r) => r.vmm === 'qemu');
  if (!native || !qemu) throw new Error(`the network lab printed no result for both VMMs (status ${res.status}): ${res.stderr.trim().slice(-2000)}`);
  const where = res.place === 'lab' ? 'in the KVM lab (nested, TCG-backed L1)' : 'on this host';
  process.stdout.write(`TCP throughput ${where}, ${mib} MiB each way, guest <-> peer namespace over tap + tc redirect + veth (MB/s = 10^6 bytes/s)\n`);
  const line = (what: string, n: number | undefined, q: number | undefined) =>
    process.stdout.write(`  ${what}: native virtio-net ${n ?? 'failed'} MB/s   qemu virtio-net (-enable-kvm, vhost=off) ${q ?? 'failed'} MB/s   native/qemu = ${ratio(n, q)}\n`);
  line('guest -> host', native.guestToPeerMBps, qemu.guestToPeerMBps);
  line('host -> guest', native.peerToGuestMBps, qemu.peerToGuestMBps);
  for (const r of [native, qemu]) {
    if (r.error) process.stdout.write(`  ${r.vmm} failed: ${r.error}\n`);
    for (const s of r.retries) process.stdout.write(`  ${r.vmm}: retried after an RCU stall in L2 (below the VMM): ${s}\n`);
  }
  const st = (native.device as { state?: Record<string, number> } | undefined)?.state;
  if (st) process.stdout.write(`  native device counters: ${JSON.stringify(st)}\n`);
}
