import fs from 'node:fs';
import path from 'node:path';
import { VrunError } from '../../common/errors.js';
import { vrunRunDir } from '../../common/paths.js';
import { fsOps } from '../../image/fs-ops.js';

/**
 * Per-pod uids/gids for jailed VMMs: a high range no distribution hands out (no passwd entry is needed), one
 * id per live pod, so two pods' QEMUs can never signal, ptrace or open each other's files. Each id is a
 * file under /run/vrun/jail-ids (tmpfs: reservations do not outlive a reboot) naming the processes that
 * hold it and the cgroups made for it; an id whose holders are all dead is reclaimed, cgroups included.
 */
export const JAIL_ID_BASE = 0x6b000000;
export const JAIL_ID_COUNT = 0x10000;

export interface JailId {
  /** Used as both uid and gid. */
  id: number;
  file: string;
}

interface Holder {
  pid: number;
  /** /proc/PID/stat's starttime: a recycled pid is not the holder. */
  start: string;
}

interface Reservation {
  holders: Holder[];
  cgroups: string[];
}

export function jailIdsDir(): string {
  return process.env.VRUN_JAIL_IDS_DIR ?? path.join(vrunRunDir(), 'jail-ids');
}

function startTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return fields[19];
  } catch {
    return undefined;
  }
}

function holder(pid: number): Holder {
  const start = startTime(pid);
  if (start === undefined) throw new VrunError(`cannot record process ${pid} as a jail id holder: it is not running`);
  return { pid, start };
}

function readReservation(file: string): Reservation | undefined {
  try {
    const r = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Reservation>;
    return { holders: Array.isArray(r.holders) ? r.holders : [], cgroups: Array.isArray(r.cgroups) ? r.cgroups : [] };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    // Torn or foreign content: nobody can prove ownership, and writers replace the file atomically.
    return { holders: [], cgroups: [] };
  }
}

function writeReservation(file: string, r: Reservation, exclusive: boolean): void {
  const data = JSON.stringify(r) + '\n';
  if (exclusive) {
    fs.writeFileSync(file, data, { flag: 'wx', mode: 0o600 });
    return;
  }
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

function isHeld(r: Reservation): boolean {
  return r.holders.some((h) => startTime(h.pid) === h.start);
}

/** Stale cgroups are removed before their id is reused; a busy one keeps the id reserved. */
function reclaimable(r: Reservation): boolean {
  for (const dir of r.cgroups) {
    try {
      fs.rmdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return false;
    }
  }
  return true;
}

function withIdsLock<T>(dir: string, fn: () => T): T {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const lockFd = fs.openSync(path.join(dir, '.lock'), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  try {
    fsOps().fsFlock(lockFd, true, true);
    return fn();
  } finally {
    fs.closeSync(lockFd); // drops the flock
  }
}

/** Frees every id whose holders are all dead (a crashed sandbox's), with its cgroups; returns the ids freed. */
function sweep(dir: string): number[] {
  const freed: number[] = [];
  for (const name of fs.readdirSync(dir)) {
    if (!/^\d+$/.test(name)) continue;
    const file = path.join(dir, name);
    const r = readReservation(file);
    if (!r || isHeld(r) || !reclaimable(r)) continue;
    fs.rmSync(file, { force: true });
    freed.push(Number(name));
  }
  return freed;
}

/**
 * Reserves the lowest free id for `holderPid` (the caller by default), after freeing stale ones. Allocation
 * is serialised by a flock on the directory's lock file, which the kernel drops if the holder dies, so a
 * reclaim never races another.
 */
export function reserveJailId(opts: { holderPid?: number; dir?: string } = {}): JailId {
  return reserveIn(opts.dir ?? jailIdsDir(), { first: JAIL_ID_BASE, step: 1, count: JAIL_ID_COUNT, holderPid: opts.holderPid });
}

/**
 * Per-pod ranges of host ids for user namespaces (virtiofsd's): USERNS_RANGE_SIZE ids each, above the jail
 * ids and disjoint from them, so no two live pods, and no pod and a jailed VMM, share a host uid.
 */
export const USERNS_RANGE_BASE = 0x70000000;
export const USERNS_RANGE_SIZE = 0x10000;
export const USERNS_RANGE_COUNT = 0x8000;

export function idRangesDir(): string {
  return path.join(jailIdsDir(), 'userns');
}

/** Reserves a range like reserveJailId reserves an id: `id` is its first host id, the file names it. */
export function reserveIdRange(opts: { holderPid?: number; dir?: string } = {}): JailId {
  return reserveIn(opts.dir ?? idRangesDir(), { first: USERNS_RANGE_BASE, step: USERNS_RANGE_SIZE, count: USERNS_RANGE_COUNT, holderPid: opts.holderPid });
}

function reserveIn(dir: string, r: { first: number; step: number; count: number; holderPid?: number }): JailId {
  return withIdsLock(dir, () => {
    const me = holder(r.holderPid ?? process.pid);
    sweep(dir);
    for (let n = 0; n < r.count; n++) {
      const id = r.first + n * r.step;
      const file = path.join(dir, String(id));
      if (fs.existsSync(file)) continue;
      writeReservation(file, { holders: [me], cgroups: [] }, true);
      return { id, file };
    }
    throw new VrunError(`no free jail id: all ${r.count} under ${dir} are held by live pods`);
  });
}

/** For cleanup after a crash (`rm -f` of a sandbox whose process died): frees what dead holders left. */
export function reclaimStaleJailIds(dir = jailIdsDir()): number[] {
  if (!fs.existsSync(dir)) return [];
  return withIdsLock(dir, () => sweep(dir));
}

/** Adds holders (the jailer, once it runs) and the cgroups to remove if the id is ever reclaimed. */
export function recordJailId(jid: JailId, add: { holderPids?: number[]; cgroups?: string[] }): void {
  const r = readReservation(jid.file);
  if (!r) throw new VrunError(`the jail id ${jid.id} reservation ${jid.file} vanished`);
  for (const pid of add.holderPids ?? []) {
    const start = startTime(pid);
    if (start !== undefined) r.holders.push({ pid, start });
  }
  r.cgroups.push(...(add.cgroups ?? []));
  writeReservation(jid.file, r, false);
}

export function releaseJailId(jid: JailId): void {
  fs.rmSync(jid.file, { force: true });
}

export function isJailIdReserved(id: number, dir = jailIdsDir()): boolean {
  return fs.existsSync(path.join(dir, String(id)));
}
