import fs from 'node:fs';
import path from 'node:path';
import { VrunError, errorMessage } from '../common/errors.js';
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
 * private upper directory, or, where overlayfs is unavailable, a copy of the layers applied in order.
 * containers/<id>/record.json names the layers in use so prune never removes them.
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

const CONTAINER_ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

export function checkContainerId(id: string): void {
  if (!CONTAINER_ID_RE.test(id)) throw new VrunError(`invalid container id "${id.slice(0, 64)}" (letters, digits, _ . -, at most 128)`);
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

/** The mode asked for by VRUN_ROOTFS_MODE (overlay|copy), else overlay with copy as the fallback. */
function wantedMode(): RootfsMode | 'auto' {
  const v = process.env.VRUN_ROOTFS_MODE;
  if (v === undefined || v === '' || v === 'auto') return 'auto';
  if (v === 'overlay' || v === 'copy') return v;
  throw new VrunError(`invalid VRUN_ROOTFS_MODE="${v}": expected overlay, copy or auto`);
}

export async function createRootfs(
  l: StoreLayout,
  rec: Omit<RootfsRecord, 'mode' | 'created'>,
  mode: RootfsMode | 'auto' = wantedMode(),
): Promise<RootfsRecord> {
  checkContainerId(rec.containerId);
  const dir = containerDir(l, rec.containerId);
  if (fs.existsSync(path.join(dir, 'record.json'))) throw new VrunError(`a rootfs for container ${rec.containerId} already exists`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.mkdirSync(rec.target, { recursive: true });
  if (fs.readdirSync(rec.target).length > 0) throw new VrunError(`rootfs target ${rec.target} is not empty`);
  // Record first: if we die half-way, release/prune still know what to undo.
  const full: RootfsRecord = { ...rec, mode: mode === 'copy' ? 'copy' : 'overlay', created: new Date().toISOString() };
  writeFileAtomic(path.join(dir, 'record.json'), JSON.stringify(full));
  const lowers = rec.diffIds.map((d) => layerFsDir(l, d));
  if (mode !== 'copy') {
    try {
      await mountOverlay(l, dir, lowers, rec.target);
      return full;
    } catch (err) {
      if (mode === 'overlay') throw err;
      (await import('../common/log.js')).rootLogger().warn({ err: errorMessage(err) }, 'overlayfs unavailable, copying the image layers instead'); // pino is slow to load
    }
  }
  full.mode = 'copy';
  writeFileAtomic(path.join(dir, 'record.json'), JSON.stringify(full));
  const { applyLayerDir } = await import('./apply-layer.js'); // the fallback only: pulls and listings skip it
  for (const lower of lowers) applyLayerDir(lower, rec.target);
  return full;
}

async function mountOverlay(l: StoreLayout, dir: string, lowers: string[], target: string): Promise<void> {
  const upper = path.join(dir, 'upper');
  const work = path.join(dir, 'work');
  fs.mkdirSync(upper, { recursive: true });
  fs.mkdirSync(work, { recursive: true });
  // overlayfs takes the top layer first. Paths relative to the layers dir keep the option under the page-size
  // limit for images with many layers (the kernel resolves them against mount's working directory).
  const lowerOpt = lowers
    .map((p) => path.relative(l.layers, p))
    .reverse()
    .join(':');
  if (lowerOpt.length + upper.length + work.length > 3900) throw new VrunError(`image has too many layers (${lowers.length}) for one overlayfs mount`);
  const opts = `lowerdir=${lowerOpt},upperdir=${upper},workdir=${work}`;
  try {
    await execFileP('mount', ['-t', 'overlay', 'overlay', '-o', opts, target], { cwd: l.layers });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new VrunError(`overlayfs mount of ${target} failed: ${stderr.trim() || errorMessage(err)}`);
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

/** Undoes createRootfs: unmounts (or removes the copied tree), then drops the container's store directory. */
export async function destroyRootfs(l: StoreLayout, id: string): Promise<void> {
  checkContainerId(id);
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
    if (fs.existsSync(rec.target)) {
      for (const name of fs.readdirSync(rec.target)) removeTree(path.join(rec.target, name));
    }
  }
  removeTree(dir);
}
