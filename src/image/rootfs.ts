import fs from 'node:fs';
import path from 'node:path';
import { VrunError, errorMessage } from '../common/errors.js';
import { checkId } from '../common/ids.js';
import { idmappedBind, idmappedOverlay, type IdMap } from '../vmm/jail/idmap.js';
import type { Digest } from './digest.js';
import { layerFsDir, type StoreLayout } from './store-layout.js';
import { removeTree, writeFileAtomic } from './atomic-fs.js';

/** mount/umount through child_process, loaded when first needed: image listing and pulls never mount. */
async function execFileP(file: string, args: string[], opts: { cwd?: string } = {}): Promise<void> {
  const { execFile } = await import('node:child_process');
  await new Promise<void>((resolve, reject) => {
    execFile(file, args, opts, (err, _stdout, stderr) => (err ? reject(Object.assign(err, { stderr })) : resolve()));
  });
}

/**
 * One writable rootfs per container: an overlayfs mount of the image's layers (read-only, shared) with a
 * private upper directory, or, when asked for (VRUN_ROOTFS_MODE=copy, for hosts without overlayfs), a copy
 * of the layers applied in order in the store and bind-mounted at the target. Either way the target is a
 * mount point and the guest-writable data lives in the store, never in the target's directory itself, so a
 * guest cannot replace the rootfs with a symlink for the host to follow at teardown. There is no silent
 * fallback from overlay to copy. containers/<id>/record.json names the layers in use so prune never removes
 * them.
 */
export type RootfsMode = 'overlay' | 'copy';

export interface RootfsRecord {
  containerId: string;
  image: string;
  manifest: Digest;
  diffIds: Digest[];
  target: string;
  mode: RootfsMode;
  created: string;
}

export function containerDir(l: StoreLayout, id: string): string {
  return path.join(l.containers, id);
}

export function readRootfsRecord(l: StoreLayout, id: string): RootfsRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(containerDir(l, id), 'record.json'), 'utf8')) as RootfsRecord;
  } catch {
    return undefined;
  }
}

export function listRootfsRecords(l: StoreLayout): RootfsRecord[] {
  let ids: string[];
  try {
    ids = fs.readdirSync(l.containers);
  } catch {
    return [];
  }
  return ids.map((id) => readRootfsRecord(l, id)).filter((r): r is RootfsRecord => r !== undefined);
}

/** The mode asked for by VRUN_ROOTFS_MODE (overlay|copy); overlay by default. */
function wantedMode(): RootfsMode {
  const v = process.env.VRUN_ROOTFS_MODE;
  if (v === undefined || v === '' || v === 'overlay') return 'overlay';
  if (v === 'copy') return v;
  throw new VrunError(`invalid VRUN_ROOTFS_MODE="${v}": expected overlay or copy`);
}

/** Mount flags of a rootfs the guest writes: nothing it makes there is usable through the mount on the host. */
const GUEST_DATA_FLAGS = 'nosuid,nodev,noexec';

export async function createRootfs(
  l: StoreLayout,
  rec: Omit<RootfsRecord, 'mode' | 'created'>,
  mode: RootfsMode = wantedMode(),
  /** The pod's mapping when the rootfs is served by a virtiofsd in a user namespace (see GuestShare). */
  idmap?: IdMap,
): Promise<RootfsRecord> {
  checkId('container id', rec.containerId);
  const dir = containerDir(l, rec.containerId);
  if (fs.existsSync(path.join(dir, 'record.json'))) throw new VrunError(`a rootfs for container ${rec.containerId} already exists`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.mkdirSync(rec.target, { recursive: true });
  if (fs.readdirSync(rec.target).length > 0) throw new VrunError(`rootfs target ${rec.target} is not empty`);
  // Record first: if we die half-way, release/prune still know what to undo.
  const full: RootfsRecord = { ...rec, mode, created: new Date().toISOString() };
  writeFileAtomic(path.join(dir, 'record.json'), JSON.stringify(full));
  const lowers = rec.diffIds.map((d) => layerFsDir(l, d));
  if (mode === 'overlay') {
    await mountOverlay(l, dir, lowers, rec.target, idmap);
    return full;
  }
  const copy = path.join(dir, 'copy');
  fs.mkdirSync(copy, { mode: 0o755 });
  fs.chmodSync(copy, 0o755); // the container's `/`, whatever the umask (see mountOverlay)
  const { applyLayerDir } = await import('./apply-layer.js'); // copy mode only: pulls and listings skip it
  for (const lower of lowers) applyLayerDir(lower, copy);
  if (idmap) {
    idmappedBind(idmap, copy, rec.target, { recursive: false, readonly: false, slave: true });
    return full;
  }
  try {
    await execFileP('mount', ['--bind', copy, rec.target]);
    await execFileP('mount', ['-o', `remount,bind,${GUEST_DATA_FLAGS}`, rec.target]);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new VrunError(`bind-mounting the copied rootfs at ${rec.target} failed: ${stderr.trim() || errorMessage(err)}`);
  }
  return full;
}

async function mountOverlay(l: StoreLayout, dir: string, lowers: string[], target: string, idmap: IdMap | undefined): Promise<void> {
  const upper = path.join(dir, 'upper');
  const work = path.join(dir, 'work');
  fs.mkdirSync(upper, { recursive: true });
  fs.mkdirSync(work, { recursive: true });
  // The upper directory's root is the container's `/`: 0755 as containerd makes it, whatever the umask (the
  // sandbox's is 077, which left `/` untraversable for every non-root user in the container).
  fs.chmodSync(upper, 0o755);
  if (idmap) {
    // Each layer is passed as an fd of its id-mapped copy: no option length limit either.
    idmappedOverlay(idmap, target, { lowers: [...lowers].reverse(), upper, work, rest: [] }, { readonly: false });
    return;
  }
  // overlayfs takes the top layer first. Paths relative to the layers dir keep the option under the page-size
  // limit for images with many layers (the kernel resolves them against mount's working directory).
  const lowerOpt = lowers
    .map((p) => path.relative(l.layers, p))
    .reverse()
    .join(':');
  if (lowerOpt.length + upper.length + work.length > 3900) throw new VrunError(`image has too many layers (${lowers.length}) for one overlayfs mount`);
  const opts = `${GUEST_DATA_FLAGS},lowerdir=${lowerOpt},upperdir=${upper},workdir=${work}`;
  try {
    await execFileP('mount', ['-t', 'overlay', 'overlay', '-o', opts, target], { cwd: l.layers });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new VrunError(`overlayfs mount of ${target} failed: ${stderr.trim() || errorMessage(err)} (on a host without overlayfs, VRUN_ROOTFS_MODE=copy copies the layers instead)`);
  }
}

export function isMountPoint(p: string): boolean {
  const want = path.resolve(p);
  const info = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  for (const line of info.split('\n')) {
    const mp = line.split(' ')[4];
    if (mp !== undefined && unescapeMount(mp) === want) return true;
  }
  return false;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * Undoes createRootfs: unmounts the target, then drops the container's store directory (upper layer or copy).
 * Call it once the guest has lost access (its VM is gone): the store directory holds what the guest wrote,
 * and it is removed without following symlinks. The target itself is only ever an empty mount point.
 */
export async function destroyRootfs(l: StoreLayout, id: string): Promise<void> {
  checkId('container id', id);
  const rec = readRootfsRecord(l, id);
  const dir = containerDir(l, id);
  if (rec) {
    if (isMountPoint(rec.target)) {
      try {
        await execFileP('umount', [rec.target]);
      } catch {
        await execFileP('umount', ['-l', rec.target]).catch((err: unknown) => {
          throw new VrunError(`cannot unmount the rootfs of container ${id} at ${rec.target}: ${errorMessage(err)}`);
        });
      }
    }
    if (isMountPoint(rec.target)) throw new VrunError(`the rootfs of container ${id} is still mounted at ${rec.target}`);
  }
  removeTree(dir);
}
