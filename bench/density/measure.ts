/**
 * What N idle pods cost the host: starts `vrun run -d busybox sleep 3600` N times, one after another (boots
 * under TCG are slow, and N boots at once would measure the boot, not the idle pod), waits for them to settle,
 * reads every pod process's /proc/PID/smaps_rollup and the host's MemAvailable, and removes the pods again
 * (also on failure). Run by bench/density.ts; `node dist/bench/density/measure.js N` prints one JSON result.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { firstChild } from '../../src/common/proc-children.js';

const root = path.resolve(import.meta.dirname, '../../..');
const vrunCommand = path.join(root, 'bin', 'vrun');

/** PSS of one process, in KiB, split the way smaps_rollup splits it. */
export interface Pss {
  total: number;
  anon: number;
  file: number;
  shmem: number;
}

/** One pod's processes: the sandbox (node), QEMU (and its jailer), every virtiofsd. */
export interface PodPss {
  name: string;
  sandbox: Pss;
  vmm: Pss;
  jailer: Pss;
  virtiofsd: Pss;
}

export interface DensityResult {
  pods: number;
  perPod: PodPss[];
  /** Host MemAvailable (KiB) before the first pod and with all of them idle. */
  memAvailableBefore: number;
  memAvailableAfter: number;
  settleSeconds: number;
}

const ZERO: Pss = { total: 0, anon: 0, file: 0, shmem: 0 };

export function addPss(a: Pss, b: Pss): Pss {
  return { total: a.total + b.total, anon: a.anon + b.anon, file: a.file + b.file, shmem: a.shmem + b.shmem };
}

/** Pss, Pss_Anon, Pss_File, Pss_Shmem of a smaps_rollup text (KiB). */
export function parseSmapsRollup(text: string): Pss {
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  const out = { total: field('Pss'), anon: field('Pss_Anon'), file: field('Pss_File'), shmem: field('Pss_Shmem') };
  if (Object.values(out).some((v) => Number.isNaN(v))) throw new Error(`smaps_rollup without the Pss fields: ${text.slice(0, 200)}`);
  return out;
}

function pssOf(pid: number | undefined): Pss {
  if (pid === undefined) return ZERO;
  return parseSmapsRollup(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
}


function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

export function memAvailableKiB(): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  if (!m) throw new Error('/proc/meminfo has no MemAvailable');
  return Number(m[1]);
}

function vrun(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(vrunCommand, args, { encoding: 'utf8', timeout: 900_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Inspect {
  Sandbox: { Pids: { sandbox?: number; vmm?: number; virtiofsd?: number[] } };
}

/** The pod's processes as its state records them; the VMM (QEMU or the native VMM) is the jailer's child when jailed. */
function podPss(name: string): PodPss {
  const r = vrun(['inspect', name]);
  if (r.status !== 0) throw new Error(`vrun inspect ${name} exited ${r.status}: ${r.stderr.trim()}`);
  const pids = (JSON.parse(r.stdout) as Inspect[])[0]?.Sandbox.Pids ?? {};
  const started = pids.vmm;
  if (started === undefined) throw new Error(`pod ${name} records no VMM pid`);
  const vmm = comm(started) === 'vrun-jailer' ? firstChild(started) : started;
  if (vmm === undefined) throw new Error(`pod ${name}: no VMM process under jailer pid ${started}: did the pod stop?`);
  return {
    name,
    sandbox: pssOf(pids.sandbox),
    vmm: pssOf(vmm),
    jailer: vmm === started ? ZERO : pssOf(started),
    virtiofsd: (pids.virtiofsd ?? []).map(pssOf).reduce(addPss, ZERO),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function measureDensity(pods: number, opts: { settleSeconds?: number; log?: (line: string) => void } = {}): Promise<DensityResult> {
  const settleSeconds = opts.settleSeconds ?? Number(process.env.VRUN_DENSITY_SETTLE_S ?? 20);
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const names = Array.from({ length: pods }, (_, i) => `density-${process.pid}-${i}`);
  // VRUN_DENSITY_VMM=native: the KVM lab's figure (bench/density.ts runs this script there).
  const vmmFlag = process.env.VRUN_DENSITY_VMM ? ['--vmm', process.env.VRUN_DENSITY_VMM] : [];
  const started: string[] = [];
  const removeAll = () => {
    for (const n of started.splice(0)) vrun(['rm', '-f', n]);
  };
  const onSignal = () => {
    removeAll();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const memAvailableBefore = memAvailableKiB();
    for (const n of names) {
      const t = performance.now();
      started.push(n);
      // An hour: 20 sequential boots under TCG on a loaded host took more than 10 minutes, and a pod whose
      // `sleep` ended is gone before it is measured.
      const r = vrun(['run', '-d', '--name', n, ...vmmFlag, 'busybox', 'sleep', '3600']);
      if (r.status !== 0) throw new Error(`vrun run -d ${n} exited ${r.status}: ${r.stderr.trim()}`);
      log(`  started ${n} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
    await sleep(settleSeconds * 1000);
    const perPod = names.map(podPss);
    const memAvailableAfter = memAvailableKiB();
    return { pods, perPod, memAvailableBefore, memAvailableAfter, settleSeconds };
  } finally {
    removeAll();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  measureDensity(Number(process.argv[2] ?? 1)).then(
    (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
    (err: unknown) => {
      process.stderr.write(`density: ${(err as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
