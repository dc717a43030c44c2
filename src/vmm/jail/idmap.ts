import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { VrunError, errorMessage } from '../../common/errors.js';
import { loadNative } from '../../common/native.js';
import { USERNS_RANGE_SIZE, recordJailId, releaseJailId, reserveIdRange, type JailId } from './ids.js';

/**
 * A pod's id mapping: host ids base..base+count-1 seen as 0..count-1. virtiofsd runs in a user namespace with
 * this mapping (as host uid `base`, with no capability in the host's namespace), and everything it serves is
 * mounted id-mapped with it (native/src/idmap.cc): a file host uid N owns on disk is N to virtiofsd, so the
 * guest sees the image's real owners, and what the guest makes as uid N is owned by N on disk. Without the
 * id-mapped mounts, host-owned files would be the overflow uid (nobody) to virtiofsd and read-only to it.
 */
export interface IdMap {
  readonly base: number;
  readonly count: number;
  /** A user namespace with the mapping (O_CLOEXEC; pass it on to a child explicitly). */
  readonly usernsFd: number;
  /** A process that uses the mapping (virtiofsd's jailer): the range stays reserved while it lives. */
  held(pid: number | undefined): void;
  /** Closes the namespace fd and frees the range once nothing holds it. Idempotent. */
  release(): void;
}

interface IdmapNative {
  idmapUserns(base: number, count: number): number;
  idmapCheck(path: string, usernsFd: number): void;
  idmapBind(source: string, target: string, usernsFd: number, recursive: boolean, readonly: boolean, slave: boolean): void;
  idmapOverlay(target: string, usernsFd: number, creatorId: number, lowers: string[], upper: string, work: string, data: string, readonly: boolean): void;
}

function native(): IdmapNative {
  const mod = loadNative<Partial<IdmapNative>>();
  if (typeof mod.idmapUserns !== 'function' || typeof mod.idmapCheck !== 'function' || typeof mod.idmapBind !== 'function' || typeof mod.idmapOverlay !== 'function') {
    throw new VrunError('the native addon is older than this vrun (it lacks the idmap functions): rebuild it with "npx node-gyp rebuild --directory native"');
  }
  return mod as IdmapNative;
}

/** Reserves a fresh range (src/vmm/jail/ids.ts) and makes its user namespace. */
export function createIdMap(): IdMap {
  const jid: JailId = reserveIdRange();
  let fd: number;
  try {
    fd = native().idmapUserns(jid.id, USERNS_RANGE_SIZE);
  } catch (err) {
    releaseJailId(jid);
    throw new VrunError(`cannot make the user namespace for host ids ${jid.id}+${USERNS_RANGE_SIZE}: ${errorMessage(err)}`);
  }
  let open = true;
  return {
    base: jid.id,
    count: USERNS_RANGE_SIZE,
    usernsFd: fd,
    held: (pid) => {
      if (pid !== undefined && open) recordJailId(jid, { holderPids: [pid] });
    },
    release: () => {
      if (!open) return;
      open = false;
      fs.closeSync(fd);
      releaseJailId(jid);
    },
  };
}

function fail(what: string, err: unknown): never {
  throw new VrunError(`${what} failed: ${errorMessage(err)}`);
}

/**
 * Why the mount at `dir` cannot be id-mapped with `map` (the kernel's error), or undefined when it can. Linux
 * before 6.3 (Debian 12's own kernel) cannot id-map tmpfs, before 5.19 not overlayfs layers; nothing is mounted.
 */
export function idmapRefusal(map: IdMap, dir: string): string | undefined {
  try {
    native().idmapCheck(dir, map.usernsFd);
    return undefined;
  } catch (err) {
    return `Linux ${os.release()} cannot id-map ${dir}: ${errorMessage(err)}`;
  }
}

/**
 * An id-mapped bind of `source` at `target` (which must exist), nosuid,nodev,noexec and read-only when asked,
 * flags set before it is attached anywhere. `slave`: it sees the source's later mounts and sends nothing back;
 * otherwise it is a peer of a shared source. Every filesystem under `source` must support id-mapped mounts
 * (ext4, xfs, btrfs, tmpfs do; overlayfs, proc, nfs do not): the kernel refuses the whole bind otherwise.
 */
export function idmappedBind(map: IdMap, source: string, target: string, opts: { recursive: boolean; readonly: boolean; slave: boolean }): void {
  try {
    native().idmapBind(source, target, map.usernsFd, opts.recursive, opts.readonly, opts.slave);
  } catch (err) {
    fail(`the id-mapped bind mount of ${source} at ${target}`, err);
  }
}

export interface OverlayLayers {
  /** Top first, as overlayfs's lowerdir lists them; absolute. */
  lowers: string[];
  /** Absent for a read-only overlay of lowers alone. */
  upper?: string;
  work?: string;
  /** The other options (index=off, ...), passed on. */
  rest: string[];
}

/**
 * overlayfs's mount options split into its layers and the rest; relative layer paths are taken from `cwd`.
 * The append forms (lowerdir+, datadir+) are refused: every layer must go through the id-mapped copies.
 */
export function overlayLayers(options: string[], cwd = '/'): OverlayLayers {
  const out: OverlayLayers = { lowers: [], rest: [] };
  for (const o of options) {
    const eq = o.indexOf('=');
    const key = eq < 0 ? o : o.slice(0, eq);
    const value = eq < 0 ? '' : o.slice(eq + 1);
    if (key === 'lowerdir') out.lowers = value.split(':').map((p) => path.resolve(cwd, p));
    else if (key === 'upperdir') out.upper = path.resolve(cwd, value);
    else if (key === 'workdir') out.work = path.resolve(cwd, value);
    else if (key === 'lowerdir+' || key === 'datadir+') throw new VrunError(`overlay option ${key} is not supported with id-mapped layers`);
    else out.rest.push(o);
  }
  if (out.lowers.length === 0 || out.lowers.some((p) => p === '/')) throw new VrunError('overlay mount without a lowerdir');
  return out;
}

/**
 * overlayfs at `target` over id-mapped copies of its layers (overlayfs itself cannot be id-mapped: the kernel
 * refuses MOUNT_ATTR_IDMAP on it), nosuid,nodev,noexec. The mount is made with the range's base as the
 * creator's fsuid/fsgid: overlayfs copies up and makes whiteouts as its creator, through the id-mapped upper
 * layer, where host root has no id. upper and work must be siblings (one id-mapped copy of their parent).
 */
export function idmappedOverlay(map: IdMap, target: string, layers: OverlayLayers, opts: { readonly: boolean }): void {
  const data = layers.rest.filter((o) => !['ro', 'rw', 'nosuid', 'nodev', 'noexec', 'suid', 'dev', 'exec', ''].includes(o)).join(',');
  try {
    native().idmapOverlay(target, map.usernsFd, map.base, layers.lowers, layers.upper ?? '', layers.work ?? '', data, opts.readonly || layers.rest.includes('ro'));
  } catch (err) {
    fail(`the overlayfs mount at ${target} (over id-mapped layers)`, err);
  }
}
