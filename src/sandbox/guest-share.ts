import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VrunError, errorMessage } from '../common/errors.js';
import { createIdMap, idmapRefusal, idmappedBind, idmappedOverlay, overlayLayers, type IdMap } from '../vmm/jail/idmap.js';
import { mountsUnder } from './cleanup.js';
import { mount, umount, type MountFlag } from './host-mount.js';

/**
 * The directory tree a pod's virtiofsd serves to the guest, built so that a hostile guest (a privileged pod
 * is root in its guest) can write only inside the mounts the host put there — a container's rootfs, its
 * volumes — and never in the tree's own directories, where the host creates mount points and later removes
 * them by path. A guest that could plant `mounts/0 -> /etc/cron.d` there would steer a host bind mount.
 *
 * Under the pod's directory (0700):
 * - `share-host/`: a small tmpfs, the host's writable view. The host makes directories and mount points here.
 * - `share/`: a read-only bind of `share-host` in the same peer group. virtiofsd serves this one: every mount
 *   the host makes under `share-host` appears here too, but the directories around them are read-only, so
 *   the guest gets EROFS for any create, rename or delete outside a mount.
 * - `share-stage/`: a private tmpfs where a filesystem other than an overlay is mounted before its id-mapped
 *   copy is moved in. Every mount gets its flags (read-only, nosuid, nodev, noexec) before it is attached: a
 *   remount of a mount that was already propagated does not reach its copies.
 *
 * Every host-side mount of guest-writable data is nosuid,nodev,noexec: nothing the guest makes (setuid-root
 * files, file capabilities, device nodes) is usable through it on the host.
 *
 * virtiofsd runs in a user namespace (a non-root host uid): `share` and every mount put in the tree are
 * id-mapped with the pod's mapping (`idmap`), so it sees the files' real owners (a mount that is not would
 * show host-owned files as nobody, read-only). Binds get their mapping and flags while still detached.
 *
 * A kernel that cannot id-map the tree's tmpfs (Linux before 6.3, Debian 12's own) gets the same tree with
 * plain mounts (`unmapped` says why) and virtiofsd runs as root, as Kata's does: the read-only tree and the
 * mount flags still hold, the user namespace does not.
 */
const HOST = 'share-host';
const VIEW = 'share';
const STAGE = 'share-stage';
/** Mount flags for anything the guest can write. */
export const GUEST_DATA_FLAGS = ['nosuid', 'nodev', 'noexec'] as const;
/** The tree holds only directories and empty mount-point files: a small tmpfs bounds what it can hold. */
const TREE_TMPFS = 'size=4m,nr_inodes=16384,mode=0755';

const REL_SEGMENT = /^[A-Za-z0-9_.-]{1,128}$/;

async function mountStep(what: string, step: Promise<void>): Promise<void> {
  try {
    await step;
  } catch (err) {
    throw new VrunError(`mounting ${what} failed: ${errorMessage(err)}`);
  }
}

async function umountLazy(target: string): Promise<void> {
  await umount(target, { detach: true }).catch(() => undefined);
}

/** mount(8)'s -o list split into mount flags and the filesystem's own data (overlay's lowerdir=..., size=...). */
function splitOptions(options: string[]): { flags: MountFlag[]; data: string } {
  const flags: MountFlag[] = [];
  const data: string[] = [];
  for (const o of options) {
    if (o === 'ro') flags.push('rdonly');
    else if (o === 'nosuid' || o === 'nodev' || o === 'noexec') flags.push(o);
    else if (o !== '' && o !== 'rw' && o !== 'suid' && o !== 'dev' && o !== 'exec') data.push(o);
  }
  return { flags, data: data.join(',') };
}

/** A path below the tree, made only of plain names: no `..`, no absolute parts, nothing the guest chose. */
function checkRel(rel: string): string[] {
  const parts = rel.split('/');
  for (const p of parts) {
    if (!REL_SEGMENT.test(p) || p === '.' || p === '..') throw new VrunError(`invalid path in the pod's share: ${JSON.stringify(rel)}`);
  }
  return parts;
}

export interface BindOptions {
  readonly: boolean;
}

export class GuestShare {
  private constructor(
    /** The pod's own directory (0700); the three trees live in it. */
    readonly podDir: string,
    /** The mapping the served tree's mounts have (virtiofsd's); none for a share only being taken down. */
    readonly idmap?: IdMap,
    /** Why the tree could not be id-mapped (its mounts are plain ones); a share that is id-mapped has none. */
    readonly unmapped?: string,
  ) {}

  /** What virtiofsd serves. */
  get servedDir(): string {
    return path.join(this.podDir, VIEW);
  }

  private get hostRoot(): string {
    return path.join(this.podDir, HOST);
  }

  private get stageRoot(): string {
    return path.join(this.podDir, STAGE);
  }

  /** Where `rel` is in the host's writable view: mount there, never in `servedDir`. */
  hostPath(rel: string): string {
    return path.join(this.hostRoot, ...checkRel(rel));
  }

  /** Where the guest's view of `rel` is on the host (for reading what the guest sees, e.g. in tests). */
  servedPath(rel: string): string {
    return path.join(this.servedDir, ...checkRel(rel));
  }

  /**
   * Sets the three trees up under `podDir` (created 0700 if missing); if a previous run of the same pod left
   * them mounted, they are taken down first.
   */
  static async create(podDir: string): Promise<GuestShare> {
    await mkdir(podDir, { recursive: true, mode: 0o700 });
    const old = GuestShare.existing(podDir);
    await old.unmountTrees();
    let map: IdMap | undefined = createIdMap();
    let refusal: string | undefined;
    for (const d of [old.hostRoot, old.servedDir, old.stageRoot]) await mkdir(d, { recursive: true, mode: 0o700 });
    try {
      await mountStep("the pod's share", mount('vrun-share', old.hostRoot, 'tmpfs', [...GUEST_DATA_FLAGS], TREE_TMPFS));
      // Its own peer group: mounts made here reach `share` (and virtiofsd's copy of it), nothing else.
      await mountStep("the pod's share (private)", mount('', old.hostRoot, '', ['private']));
      await mountStep("the pod's share (shared)", mount('', old.hostRoot, '', ['shared']));
      refusal = idmapRefusal(map, old.hostRoot);
      if (refusal) {
        map.release();
        map = undefined;
      }
      // A peer of share-host: mounts made there later show here, each with its own (id-mapped) mount.
      if (map) {
        idmappedBind(map, old.hostRoot, old.servedDir, { recursive: false, readonly: true, slave: false });
      } else {
        await mountStep("the pod's served share", mount(old.hostRoot, old.servedDir, '', ['bind']));
        await mountStep("the pod's served share (read-only)", mount('', old.servedDir, '', ['remount', 'bind', 'rdonly', ...GUEST_DATA_FLAGS]));
      }
      await mountStep("the pod's mount stage", mount('vrun-stage', old.stageRoot, 'tmpfs', [...GUEST_DATA_FLAGS], 'size=64k,mode=0700'));
      await mountStep("the pod's mount stage (private)", mount('', old.stageRoot, '', ['private']));
    } catch (err) {
      await old.unmountTrees();
      map?.release();
      throw err;
    }
    return new GuestShare(podDir, map, refusal);
  }

  /** The share of a pod whose trees were set up earlier (by a process that may be gone), to take down. */
  static existing(podDir: string): GuestShare {
    return new GuestShare(podDir);
  }

  /** Makes a directory (and its parents) in the tree, for the host's own layout. */
  async mkdir(rel: string): Promise<string> {
    const p = this.hostPath(rel);
    await mkdir(p, { recursive: true, mode: 0o755 });
    return p;
  }

  /**
   * A new filesystem mount (an overlay, a tmpfs) at `rel`, with the guest-data flags and the pod's mapping
   * from the start: an overlay over id-mapped copies of its layers (overlayfs cannot be id-mapped itself),
   * anything else made in the stage and moved in as an id-mapped copy.
   */
  async mountFs(rel: string, type: string, source: string, options: string[], what: string): Promise<void> {
    this.usable(what);
    const target = await this.mkdir(rel);
    const { flags, data } = splitOptions(options);
    const map = this.idmap;
    if (!map) {
      // Made in one mount(2) call: its copy in the served view has the guest-data flags from the start.
      await mountStep(what, mount(source, target, type, [...GUEST_DATA_FLAGS, ...flags], data));
      return;
    }
    if (type === 'overlay') {
      idmappedOverlay(map, target, overlayLayers(data.split(',')), { readonly: flags.includes('rdonly') });
      return;
    }
    const staged = path.join(this.stageRoot, randomBytes(8).toString('hex'));
    await mkdir(staged, { mode: 0o700 });
    try {
      await mountStep(what, mount(source, staged, type, [...GUEST_DATA_FLAGS, ...flags], data));
      idmappedBind(map, staged, target, { recursive: false, readonly: flags.includes('rdonly'), slave: false });
    } finally {
      await umountLazy(staged);
      await rmdir(staged).catch(() => undefined);
    }
  }

  /**
   * A recursive, id-mapped bind of the host path `source` (file or directory) at `rel`: given its flags while
   * detached, made a slave (the host's later mounts under `source` still show; nothing propagates back),
   * then attached in one step. Every filesystem under `source` must support id-mapped mounts.
   */
  async bind(source: string, rel: string, opts: BindOptions, what = source): Promise<void> {
    let st;
    try {
      // The source is a host path the caller chose (kubelet's hostPath, a CLI volume), not the guest's.
      st = await stat(source);
    } catch (err) {
      throw new VrunError(`bind mount source ${source}: ${(err as Error).message}`);
    }
    const target = this.hostPath(rel);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
    if (st.isDirectory()) {
      await mkdir(target, { mode: 0o755 }).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e;
      });
    } else {
      await writeFile(target, '', { flag: 'a', mode: 0o644 });
    }
    this.usable(what);
    if (!this.idmap) {
      await this.plainBind(source, target, st.isDirectory(), opts, what);
      return;
    }
    // Mapped, flagged and made a slave while detached, then attached in one step: no copy without them.
    idmappedBind(this.idmap, source, target, { recursive: true, readonly: opts.readonly, slave: true });
  }

  /** Without id mapping: bound in the private stage, flagged and made a slave there, then moved in. */
  private async plainBind(source: string, target: string, isDir: boolean, opts: BindOptions, what: string): Promise<void> {
    const staged = path.join(this.stageRoot, randomBytes(8).toString('hex'));
    if (isDir) await mkdir(staged, { mode: 0o700 });
    else await writeFile(staged, '', { flag: 'wx', mode: 0o600 });
    try {
      await mountStep(what, mount(source, staged, '', ['bind', 'rec']));
      await mountStep(`${what} (slave)`, mount('', staged, '', ['slave', 'rec']));
      await mountStep(`${what} (flags)`, mount('', staged, '', ['remount', 'bind', ...(opts.readonly ? (['rdonly'] as const) : []), ...GUEST_DATA_FLAGS]));
      await mountStep(`${what} (into the share)`, mount(staged, target, '', ['move']));
    } catch (err) {
      await umountLazy(staged);
      throw err;
    } finally {
      await (isDir ? rmdir(staged) : unlink(staged)).catch(() => undefined);
    }
  }

  private usable(what: string): void {
    if (!this.idmap && !this.unmapped) throw new VrunError(`cannot mount ${what}: this share is only being taken down`);
  }

  /**
   * Unmounts everything at or under `rel` (deepest first), then removes what the host made there. The tree
   * holds only directories and empty files the host created (the guest cannot write it), and the walk never
   * leaves the tree's own filesystem: anything else found is left alone and reported.
   */
  async remove(rel: string): Promise<void> {
    const target = this.hostPath(rel);
    for (const mp of await mountsUnder(target)) await umountLazy(mp);
    const rootDev = (await lstat(this.hostRoot)).dev;
    await removeHostTree(target, rootDev);
  }

  /** Takes the whole share down: every mount under the three trees, then the trees. Safe to repeat. */
  async destroy(): Promise<void> {
    await this.unmountTrees();
    for (const d of [this.hostRoot, this.servedDir, this.stageRoot]) await rmdir(d).catch(() => undefined);
    this.idmap?.release();
  }

  private async unmountTrees(): Promise<void> {
    for (const root of [this.servedDir, this.hostRoot, this.stageRoot]) {
      for (const mp of await mountsUnder(root)) await umountLazy(mp);
    }
  }
}

/**
 * Removes a host-made tree of directories and empty regular files on the filesystem `dev`. Symlinks are never
 * followed (lstat); a non-empty file, another filesystem or any other kind of entry stops the removal with
 * an error naming it, so a mount that is somehow still there is never emptied.
 */
export async function removeHostTree(p: string, dev: number): Promise<void> {
  let st;
  try {
    st = await lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (st.dev !== dev) throw new VrunError(`not removing ${p}: it is on another filesystem (still mounted?)`);
  if (st.isDirectory()) {
    for (const name of await readdir(p)) await removeHostTree(path.join(p, name), dev);
    await rmdir(p);
    return;
  }
  if (st.isFile() && st.size === 0) {
    await unlink(p);
    return;
  }
  throw new VrunError(`not removing ${p}: the pod's share holds only directories and mount points, this is not one`);
}
