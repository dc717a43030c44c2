import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Host cgroups for one jailed VMM: memory (guest RAM plus the VMM's own), pids (threads count) and cpu.
 *
 * cgroup v1 (hybrid hosts, like these): one directory per controller, `<our own cgroup>/vrun/<name>`, under the
 * caller's cgroup rather than the hierarchy's root so a VMM never escapes limits its launcher is under (a
 * systemd unit, a container); v1 allows children next to member processes. cgroup v2 (unified): its "no
 * internal processes" rule forbids enabling controllers below a cgroup that holds the caller, so there the
 * directory is `/sys/fs/cgroup/vrun/<name>`, with the controllers enabled on the way down.
 */
export type Controller = 'memory' | 'pids' | 'cpu';

export interface CgroupLimits {
  memoryBytes?: number;
  pids?: number;
  /** CFS quota per period; none by default (the guest's vCPU count already bounds it). */
  cpu?: { quotaUs: number; periodUs: number };
}

export interface PodCgroups {
  version: 1 | 2;
  /** Directories the jailer joins. */
  dirs: string[];
  applied: Controller[];
  /** Controllers skipped, with why (absent from the host, not writable). */
  skipped: Partial<Record<Controller, string>>;
  /** Removes the directories; waits out the moment a just-killed VMM's threads still count as members. */
  remove(): Promise<void>;
}

const CONTROLLERS: Controller[] = ['memory', 'pids', 'cpu'];
const CGROUP_ROOT = '/sys/fs/cgroup';

export function cgroupVersion(root = CGROUP_ROOT): 1 | 2 {
  return fs.existsSync(path.join(root, 'cgroup.controllers')) ? 2 : 1;
}

/** Our own cgroup path in the v1 hierarchy holding `controller` (from /proc/self/cgroup). */
function ownV1Path(controller: string): string | undefined {
  for (const line of fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, list, p] = line.split(':');
    if (list !== undefined && p !== undefined && list.split(',').includes(controller)) return p;
  }
  return undefined;
}

function v1Files(c: Controller, l: CgroupLimits): [string, string][] {
  switch (c) {
    case 'memory':
      return l.memoryBytes ? [['memory.limit_in_bytes', String(l.memoryBytes)]] : [];
    case 'pids':
      return l.pids ? [['pids.max', String(l.pids)]] : [];
    case 'cpu':
      return l.cpu ? [['cpu.cfs_period_us', String(l.cpu.periodUs)], ['cpu.cfs_quota_us', String(l.cpu.quotaUs)]] : [];
  }
}

function v2Files(c: Controller, l: CgroupLimits): [string, string][] {
  switch (c) {
    case 'memory':
      // No swap either: a VMM swapping guest RAM out would only hide that the limit is too small.
      return l.memoryBytes ? [['memory.max', String(l.memoryBytes)], ['memory.swap.max', '0']] : [];
    case 'pids':
      return l.pids ? [['pids.max', String(l.pids)]] : [];
    case 'cpu':
      return l.cpu ? [['cpu.max', `${l.cpu.quotaUs} ${l.cpu.periodUs}`]] : [];
  }
}

function reason(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}

/**
 * A cgroup stays busy until the kernel has finished tearing down its last task, which for a killed VMM (a
 * pid-namespace init whose threads the kernel reaps after it) lags the exit its parent saw: on a loaded host
 * here, by more than 2 s. EBUSY is therefore waited out, up to REMOVE_WAIT_MS.
 */
const REMOVE_WAIT_MS = 15_000;

async function removeDirs(dirs: string[]): Promise<void> {
  for (const dir of dirs) {
    const deadline = Date.now() + REMOVE_WAIT_MS;
    for (;;) {
      try {
        fs.rmdirSync(dir);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (code !== 'EBUSY' || Date.now() > deadline) throw err;
        await sleep(20);
      }
    }
  }
}

function createV1(name: string, limits: CgroupLimits, root: string): PodCgroups {
  const dirs: string[] = [];
  const applied: Controller[] = [];
  const skipped: PodCgroups['skipped'] = {};
  for (const c of CONTROLLERS) {
    const own = ownV1Path(c);
    const mount = path.join(root, c);
    if (own === undefined || !fs.existsSync(path.join(mount, 'cgroup.procs'))) {
      skipped[c] = 'not mounted on this host';
      continue;
    }
    const dir = path.join(mount, own, 'vrun', name);
    try {
      fs.mkdirSync(dir, { recursive: true });
      for (const [file, value] of v1Files(c, limits)) fs.writeFileSync(path.join(dir, file), value);
      dirs.push(dir);
      applied.push(c);
    } catch (err) {
      skipped[c] = reason(err);
      try {
        fs.rmdirSync(dir);
      } catch {
        // never created
      }
    }
  }
  return { version: 1, dirs, applied, skipped, remove: () => removeDirs(dirs) };
}

function enable(dir: string, controllers: Controller[]): void {
  const file = path.join(dir, 'cgroup.subtree_control');
  const on = fs.readFileSync(file, 'utf8').trim().split(/\s+/);
  const missing = controllers.filter((c) => !on.includes(c));
  if (missing.length > 0) fs.writeFileSync(file, missing.map((c) => `+${c}`).join(' '));
}

function createV2(name: string, limits: CgroupLimits, root: string): PodCgroups {
  const skipped: PodCgroups['skipped'] = {};
  const available = fs.readFileSync(path.join(root, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
  const wanted = CONTROLLERS.filter((c) => {
    if (!available.includes(c)) skipped[c] = 'not available on this host';
    return available.includes(c);
  });
  const parent = path.join(root, 'vrun');
  const dir = path.join(parent, name);
  fs.mkdirSync(parent, { recursive: true });
  enable(root, wanted);
  enable(parent, wanted);
  fs.mkdirSync(dir, { recursive: true });
  const applied: Controller[] = [];
  for (const c of wanted) {
    try {
      for (const [file, value] of v2Files(c, limits)) {
        // memory.swap.max is absent on hosts without swap accounting; the limit without it still holds.
        if (file === 'memory.swap.max' && !fs.existsSync(path.join(dir, file))) continue;
        fs.writeFileSync(path.join(dir, file), value);
      }
      applied.push(c);
    } catch (err) {
      skipped[c] = reason(err);
    }
  }
  return { version: 2, dirs: [dir], applied, skipped, remove: () => removeDirs([dir]) };
}

export function createPodCgroups(name: string, limits: CgroupLimits, opts: { root?: string } = {}): PodCgroups {
  const root = opts.root ?? CGROUP_ROOT;
  if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.')) throw new Error(`invalid cgroup name "${name}"`);
  return cgroupVersion(root) === 2 ? createV2(name, limits, root) : createV1(name, limits, root);
}
