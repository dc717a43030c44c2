/**
 * `npm run bench -- density`: host memory per idle pod (`vrun run -d busybox sleep 3600`) with N pods up at
 * once (VRUN_DENSITY_N, default 1,10,20), as PSS per process (QEMU, sandbox, virtiofsd) and per kind (guest
 * RAM touched = QEMU's shmem, i.e. its memfd; QEMU anonymous; file), plus the host's MemAvailable drop per
 * pod. Runs of more than 3 pods take /tmp/vrun-heavy.lock (flock) so two heavy runs never overlap. The peer
 * is the same pods at N=1 in the same run: what sharing saves shows as per-pod PSS falling with N.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
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

function mean(pods: PodPss[], pick: (p: PodPss) => number): number {
  return pods.reduce((s, p) => s + pick(p), 0) / Math.max(1, pods.length);
}

const sum = (p: Pss) => p.total;
const podTotal = (p: PodPss) => p.sandbox.total + p.vmm.total + p.jailer.total + p.virtiofsd.total;

export interface DensityRow {
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

export async function run(): Promise<void> {
  const counts = (process.env.VRUN_DENSITY_N ?? '1,10,20').split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0);
  const label = process.env.VRUN_DENSITY_LABEL ?? 'this tree';
  const rows: DensityRow[] = [];
  for (const n of counts) {
    process.stdout.write(`${n} idle pod(s) (vrun run -d busybox sleep 3600)${n > 3 ? `, under flock ${HEAVY_LOCK}` : ''}:\n`);
    const r = await runMeasure(n);
    const row = summarize(r);
    rows.push(row);
    process.stdout.write(
      `  per pod: ${row.perPodMiB.toFixed(1)} MiB PSS = QEMU ${row.qemu.toFixed(1)} (guest RAM touched ${row.guestRam.toFixed(1)}, anonymous ${row.qemuAnon.toFixed(1)}, file ${row.qemuFile.toFixed(1)})` +
        ` + sandbox ${row.sandbox.toFixed(1)} + virtiofsd ${row.virtiofsd.toFixed(1)} + jailer ${row.jailer.toFixed(1)}; host MemAvailable -${row.hostGrowthMiB.toFixed(1)} MiB per pod\n`,
    );
    const worst = r.perPod.reduce((a, b) => (podTotal(a) >= podTotal(b) ? a : b));
    process.stdout.write(`  largest pod ${worst.name}: ${f1(podTotal(worst))} MiB; settled ${r.settleSeconds} s before reading\n`);
  }
  const one = rows.find((r) => r.pods === 1);
  process.stdout.write(`\n| ${label} | pods | PSS/pod | QEMU | guest RAM | QEMU anon | QEMU file | sandbox | virtiofsd | MemAvailable drop/pod |\n|---|---|---|---|---|---|---|---|---|---|\n`);
  for (const r of rows) {
    process.stdout.write(
      `| | ${r.pods} | ${r.perPodMiB.toFixed(1)} | ${r.qemu.toFixed(1)} | ${r.guestRam.toFixed(1)} | ${r.qemuAnon.toFixed(1)} | ${r.qemuFile.toFixed(1)} | ${r.sandbox.toFixed(1)} | ${r.virtiofsd.toFixed(1)} | ${r.hostGrowthMiB.toFixed(1)} |\n`,
    );
  }
  for (const r of rows) {
    if (one && r !== one) process.stdout.write(`ratio per-pod PSS at N=${r.pods} / N=1: ${(r.perPodMiB / one.perPodMiB).toFixed(2)}x\n`);
    process.stdout.write(`ratio per-pod PSS at N=${r.pods} / 100 MiB target (issue 19): ${(r.perPodMiB / 100).toFixed(2)}x\n`);
  }
}
