/**
 * `npm run bench -- density`: host memory per idle pod (`vrun run -d busybox sleep 3600`) with N pods up at
 * once (VRUN_DENSITY_N, default 1,10,20), as PSS per process (QEMU, sandbox, virtiofsd) and per kind (guest
 * RAM touched = QEMU's shmem, i.e. its memfd; QEMU anonymous; file), plus the host's MemAvailable drop per
 * pod. Runs of more than 3 pods take /tmp/vrun-heavy.lock (flock) so two heavy runs never overlap. The peer
 * is the same pods at N=1 in the same run: what sharing saves shows as per-pod PSS falling with N. Then the
 * native VMM's figure (VRUN_DENSITY_NATIVE_N, default 1,3; empty to skip) where /dev/kvm boots Linux: the KVM
 * lab here, with the QEMU pods at N=1 as its peer.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { guestImageCacheDir, projectRoot } from '../src/common/paths.js';
import { ensureLabImage } from '../src/guest-image/image.js';
import { kvmPlace, runWithLinuxKvm } from '../src/kvm-lab/placement.js';
import type { DensityResult, PodPss, Pss } from './density/measure.js';

const HEAVY_LOCK = '/tmp/vrun-heavy.lock';
const mib = (kib: number) => kib / 1024;
const f1 = (kib: number) => mib(kib).toFixed(1);

function runMeasure(pods: number): Promise<DensityResult> {
  const script = path.join(import.meta.dirname, 'density', 'measure.js');
  const [cmd, args] = pods > 3 ? ['flock', [HEAVY_LOCK, process.execPath, script, String(pods)]] : [process.execPath, [script, String(pods)]];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`measuring ${pods} pods failed (exit ${code})`));
      resolve(JSON.parse(out.trim().split('\n').pop() ?? '{}') as DensityResult);
    });
  });
}

/**
 * The native VMM's figure: the same measurement where /dev/kvm boots Linux (the KVM lab here), with
 * `--vmm native`. L1 is a VM of its own, so PSS inside it is what the pod costs its host; the QEMU pods above
 * are the peer.
 */
async function measureNative(pods: number): Promise<DensityResult> {
  if (kvmPlace() === 'lab') await ensureLabImage();
  const script = `
set -eu
base=$(mktemp -d /run/vrun-density-XXXXXX)
# No pod network: the lab's /etc is the host's, read-only.
export VRUN_ROOT="$base/root" VRUN_RUN="$base/run" VRUN_DEBUG= VRUN_NETWORK=none VRUN_DENSITY_VMM=native
mkdir -p "$VRUN_ROOT" "$VRUN_RUN"
ln -s '${guestImageCacheDir()}' "$VRUN_ROOT/guest-image"
cd '${projectRoot()}'
echo "VRUN-DENSITY $(node dist/bench/density/measure.js ${pods})"
`;
  const r = await runWithLinuxKvm(script, { timeoutMs: 900_000 });
  const line = /^VRUN-DENSITY (\{.*\})$/m.exec(r.stdout);
  if (r.status !== 0 || !line) throw new Error(`native density in the ${r.place} exited ${r.status}: ${r.stderr.trim().split('\n').slice(-5).join(' / ')}`);
  return JSON.parse(line[1] as string) as DensityResult;
}

function mean(pods: PodPss[], pick: (p: PodPss) => number): number {
  return pods.reduce((s, p) => s + pick(p), 0) / Math.max(1, pods.length);
}

const sum = (p: Pss) => p.total;
const podTotal = (p: PodPss) => p.sandbox.total + p.vmm.total + p.jailer.total + p.virtiofsd.total;

export interface DensityRow {
  vmm?: 'qemu' | 'native';
  pods: number;
  perPodMiB: number;
  qemu: number;
  guestRam: number;
  qemuAnon: number;
  qemuFile: number;
  sandbox: number;
  virtiofsd: number;
  jailer: number;
  hostGrowthMiB: number;
}

export function summarize(r: DensityResult): DensityRow {
  return {
    pods: r.pods,
    perPodMiB: mib(mean(r.perPod, podTotal)),
    qemu: mib(mean(r.perPod, (p) => sum(p.vmm))),
    guestRam: mib(mean(r.perPod, (p) => p.vmm.shmem)),
    qemuAnon: mib(mean(r.perPod, (p) => p.vmm.anon)),
    qemuFile: mib(mean(r.perPod, (p) => p.vmm.file)),
    sandbox: mib(mean(r.perPod, (p) => sum(p.sandbox))),
    virtiofsd: mib(mean(r.perPod, (p) => sum(p.virtiofsd))),
    jailer: mib(mean(r.perPod, (p) => sum(p.jailer))),
    hostGrowthMiB: mib((r.memAvailableBefore - r.memAvailableAfter) / r.pods),
  };
}

function parseCounts(text: string): number[] {
  return text.split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0);
}

export async function run(): Promise<void> {
  const counts = parseCounts(process.env.VRUN_DENSITY_N ?? '1,10,20');
  // The KVM lab's L1 has 4 GiB and two TCG-emulated CPUs: a few native pods, not twenty.
  const nativeCounts = parseCounts(process.env.VRUN_DENSITY_NATIVE_N ?? '1,3');
  const label = process.env.VRUN_DENSITY_LABEL ?? 'this tree';
  const rows: DensityRow[] = [];
  const runs: { n: number; vmm: 'qemu' | 'native' }[] = [...counts.map((n) => ({ n, vmm: 'qemu' as const })), ...nativeCounts.map((n) => ({ n, vmm: 'native' as const }))];
  for (const { n, vmm } of runs) {
    process.stdout.write(
      vmm === 'qemu' ? `${n} idle pod(s) (vrun run -d busybox sleep 3600)${n > 3 ? `, under flock ${HEAVY_LOCK}` : ''}:\n` : `${n} idle native VMM pod(s) (vrun run -d --vmm native, in the ${kvmPlace() === 'lab' ? 'KVM lab' : 'host'}):\n`,
    );
    const r = vmm === 'qemu' ? await runMeasure(n) : await measureNative(n);
    const row = { ...summarize(r), vmm };
    rows.push(row);
    process.stdout.write(
      `  per pod: ${row.perPodMiB.toFixed(1)} MiB PSS = ${vmm === 'qemu' ? 'QEMU' : 'native VMM'} ${row.qemu.toFixed(1)} (guest RAM touched ${row.guestRam.toFixed(1)}, anonymous ${row.qemuAnon.toFixed(1)}, file ${row.qemuFile.toFixed(1)})` +
        ` + sandbox ${row.sandbox.toFixed(1)} + virtiofsd ${row.virtiofsd.toFixed(1)} + jailer ${row.jailer.toFixed(1)}; ${vmm === 'qemu' ? 'host' : 'L1'} MemAvailable -${row.hostGrowthMiB.toFixed(1)} MiB per pod\n`,
    );
    const worst = r.perPod.reduce((a, b) => (podTotal(a) >= podTotal(b) ? a : b));
    process.stdout.write(`  largest pod ${worst.name}: ${f1(podTotal(worst))} MiB; settled ${r.settleSeconds} s before reading\n`);
  }
  process.stdout.write(`\n| ${label} | VMM | pods | PSS/pod | VMM | guest RAM | VMM anon | VMM file | sandbox | virtiofsd | MemAvailable drop/pod |\n|---|---|---|---|---|---|---|---|---|---|---|\n`);
  for (const r of rows) {
    process.stdout.write(
      `| | ${r.vmm} | ${r.pods} | ${r.perPodMiB.toFixed(1)} | ${r.qemu.toFixed(1)} | ${r.guestRam.toFixed(1)} | ${r.qemuAnon.toFixed(1)} | ${r.qemuFile.toFixed(1)} | ${r.sandbox.toFixed(1)} | ${r.virtiofsd.toFixed(1)} | ${r.hostGrowthMiB.toFixed(1)} |\n`,
    );
  }
  for (const vmm of ['qemu', 'native'] as const) {
    const mine = rows.filter((r) => r.vmm === vmm);
    const one = mine.find((r) => r.pods === 1);
    for (const r of mine) {
      if (one && r !== one) process.stdout.write(`ratio ${vmm} per-pod PSS at N=${r.pods} / N=1: ${(r.perPodMiB / one.perPodMiB).toFixed(2)}x\n`);
      process.stdout.write(`ratio ${vmm} per-pod PSS at N=${r.pods} / 100 MiB target (issue 19): ${(r.perPodMiB / 100).toFixed(2)}x\n`);
    }
  }
  const q1 = rows.find((r) => r.vmm === 'qemu' && r.pods === 1);
  const n1 = rows.find((r) => r.vmm === 'native' && r.pods === 1);
  if (q1 && n1) process.stdout.write(`ratio native / QEMU per-pod PSS at N=1: ${(n1.perPodMiB / q1.perPodMiB).toFixed(2)}x\n`);
}
