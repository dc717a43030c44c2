/**
 * `vrun run --vm busybox true`, phase by phase (image prep, VMM start, guest boot, agent ready, container
 * create + start, teardown) as p50/p95 over VRUN_BENCH_RUNS runs (default 10), next to `crun run` of the
 * same image's rootfs and spec directly on the host, measured in the same run. The phases come from the
 * sandbox's own timers (state.json), the totals from the wall clock around the CLI.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildSpec } from '../src/sandbox/oci-spec.js';
import { prepareRootfs } from '../src/sandbox/rootfs.js';

const root = path.resolve(import.meta.dirname, '../..');
/** The command as installed (package.json's bin). */
const vrunCommand = path.join(root, 'bin', 'vrun');

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

function vrun(args: string[], env: NodeJS.ProcessEnv): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(vrunCommand, args, { encoding: 'utf8', env, timeout: 600_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Inspect {
  Sandbox: { PhasesMs: Record<string, number> };
  State: { ExitCode: number };
}

async function crunBundle(dir: string): Promise<{ bundle: string; release(): Promise<void> }> {
  const bundle = path.join(dir, 'bundle');
  const prepared = await prepareRootfs('busybox', `bench-crun-${process.pid}`, path.join(bundle, 'rootfs'));
  const spec = buildSpec(prepared.config, { args: ['true'] }, prepared.hostPath);
  // Host cgroups are hybrid here: crun runs only with a private cgroup2 mount and no cgroup namespace.
  spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== 'cgroup');
  // No device rules: on cgroup v2 they become an eBPF program, and this host refuses crun's RLIMIT_MEMLOCK raise.
  spec.linux.resources = { devices: [] };
  spec.mounts = spec.mounts.filter((m) => m.destination !== '/sys/fs/cgroup');
  // The host's hard RLIMIT_NOFILE is below the container default the guest allows.
  spec.process.rlimits = [];
  writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec));
  return { bundle, release: () => prepared.release() };
}

export async function run(): Promise<void> {
  const runs = Number(process.env.VRUN_BENCH_RUNS ?? 10);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vrun-bench-crun-'));
  const crunTimes: number[] = [];
  const { bundle, release } = await crunBundle(dir);
  try {
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      const r = spawnSync('unshare', ['-m', 'sh', '-c', `mount -t cgroup2 none /sys/fs/cgroup && exec crun run -b ${bundle} vrun-bench-${process.pid}-${i}`], { encoding: 'utf8' });
      crunTimes.push(performance.now() - t);
      if (r.status !== 0) throw new Error(`crun run exited ${r.status}: ${r.stderr.trim()}`);
    }
  } finally {
    await release();
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(`crun run on the host: p50 ${pct(crunTimes, 50).toFixed(1)} ms, p95 ${pct(crunTimes, 95).toFixed(1)} ms over ${runs} runs\n`);

  const runDir = mkdtempSync(path.join('/run', 'vrun-bench-'));
  const env = { ...process.env, VRUN_RUN: runDir };
  const phases: Record<string, number[]> = {};
  const totals: number[] = [];
  // The jailer's cost: every run is paired with one whose QEMU runs unconfined (VRUN_JAIL=0), interleaved so
  // both see the same host load.
  const openPhases: Record<string, number[]> = {};
  const openTotals: number[] = [];
  const once = (name: string, runEnv: NodeJS.ProcessEnv, into: Record<string, number[]>, totalsInto: number[]) => {
    const t = performance.now();
    const r = vrun(['run', '--vm', '--name', name, 'busybox', 'true'], runEnv);
    totalsInto.push(performance.now() - t);
    if (r.status !== 0) throw new Error(`vrun run exited ${r.status}: ${r.stderr.trim()}`);
    const info = (JSON.parse(vrun(['inspect', name], runEnv).stdout) as Inspect[])[0];
    for (const [k, v] of Object.entries(info?.Sandbox.PhasesMs ?? {})) (into[k] ??= []).push(v);
    vrun(['rm', '-f', name], runEnv);
  };
  try {
    for (let i = 0; i < runs; i++) {
      once(`bench-${process.pid}-${i}`, env, phases, totals);
      once(`bench-open-${process.pid}-${i}`, { ...env, VRUN_JAIL: '0' }, openPhases, openTotals);
    }
  } finally {
    rmSync(runDir, { recursive: true, force: true });
  }

  const row = (label: string, xs: number[]) => `  ${label.padEnd(26)} p50 ${pct(xs, 50).toFixed(1).padStart(8)} ms   p95 ${pct(xs, 95).toFixed(1).padStart(8)} ms`;
  process.stdout.write(`vrun run --vm busybox true, ${runs} runs (phases from the sandbox's timers):\n`);
  for (const k of ['imagePrep', 'vmmStart', 'guestBoot', 'agentReady', 'containerCreate', 'containerStart', 'teardown']) {
    if (phases[k]) process.stdout.write(`${row(k, phases[k])}\n`);
  }
  const nonBoot = totals.map((_, i) => ['imagePrep', 'vmmStart', 'agentReady', 'containerCreate', 'containerStart', 'teardown'].reduce((s, k) => s + (phases[k]?.[i] ?? 0), 0));
  process.stdout.write(`${row('all but guest boot+agent', totals.map((_, i) => (nonBoot[i] ?? 0) - (phases.agentReady?.[i] ?? 0)))}\n`);
  const allPhases = totals.map((_, i) => Object.values(phases).reduce((sum, xs) => sum + (xs[i] ?? 0), 0));
  process.stdout.write(`${row('CLI + sandbox process', totals.map((t, i) => t - (allPhases[i] ?? 0)))}\n`);
  process.stdout.write(`${row('total (CLI wall clock)', totals)}\n`);
  process.stdout.write(`${row('crun run on the host', crunTimes)}\n`);
  process.stdout.write(`jailer's cost, the same runs with QEMU unconfined (VRUN_JAIL=0) interleaved:\n`);
  process.stdout.write(`${row('vmmStart, unjailed', openPhases.vmmStart ?? [])}\n`);
  process.stdout.write(`${row('teardown, unjailed', openPhases.teardown ?? [])}\n`);
  process.stdout.write(`${row('total, unjailed', openTotals)}\n`);
  process.stdout.write(
    `ratio jailed/unjailed (p50): vmmStart ${(pct(phases.vmmStart ?? [], 50) / pct(openPhases.vmmStart ?? [], 50)).toFixed(2)}x (+${(pct(phases.vmmStart ?? [], 50) - pct(openPhases.vmmStart ?? [], 50)).toFixed(1)} ms), total ${(pct(totals, 50) / pct(openTotals, 50)).toFixed(2)}x\n`,
  );
  process.stdout.write(`ratio vrun/crun (p50 total): ${(pct(totals, 50) / pct(crunTimes, 50)).toFixed(1)}x; guest boot is ${((pct(phases.guestBoot ?? [], 50) / pct(totals, 50)) * 100).toFixed(0)}% of the total\n`);
}
