import fs from 'node:fs';
import path from 'node:path';
import { VrunError } from '../common/errors.js';
import type { Digest } from './digest.js';
import { withLock } from './lock.js';
import { blobPath, layerDir, layerFsDir, lockFile, type StoreLayout } from './store-layout.js';
import { removeTree, syncDir } from './atomic-fs.js';
import type { UnpackLimits, UnpackResult } from './unpack.js';

/**
 * Unpacked layers, keyed by diff id (the digest of the uncompressed tar), so two images sharing a layer, or the
 * same layer compressed two ways, share one directory. A layer is unpacked into tmp/, its diff id checked, and
 * only then renamed into layers/, so a directory under layers/ is always complete and verified. The blob itself
 * is not hashed again: the store hashed it before it got its name.
 */
export interface LayerMeta {
  diffId: Digest;
  blob: Digest;
  uncompressedBytes: number;
  entries: number;
  compression: string;
  skippedDevices: string[];
}

export function hasLayer(l: StoreLayout, diffId: Digest): boolean {
  return fs.existsSync(path.join(layerDir(l, diffId), 'meta.json'));
}

export type LayerOpts = { what: string; limits?: UnpackLimits; onBytes?: (n: number) => void };

export async function ensureLayer(l: StoreLayout, diffId: Digest, blob: Digest, opts: LayerOpts = { what: 'layer' }): Promise<string> {
  if (hasLayer(l, diffId)) return layerFsDir(l, diffId);
  return withLock(lockFile(l, `layer-${diffId.slice(7, 23)}`), async () => {
    if (hasLayer(l, diffId)) return layerFsDir(l, diffId);
    const work = await unpackToWork(l, diffId, blob, blobPath(l, blob), opts);
    return install(l, diffId, work);
  });
}

/** Unpacks into a fresh directory under tmp/ and verifies the diff id; the caller installs or discards it. */
async function unpackToWork(l: StoreLayout, diffId: Digest, blob: Digest, blobFile: string, opts: LayerOpts): Promise<string> {
  fs.mkdirSync(l.tmp, { recursive: true });
  fs.mkdirSync(l.layers, { recursive: true });
  const work = fs.mkdtempSync(path.join(l.tmp, `layer-${process.pid}-`));
  try {
    const fsDir = path.join(work, 'fs');
    fs.mkdirSync(fsDir, { mode: 0o755 });
    // The blob was hashed when it was stored (blob-store.ts): only the diff id is left to check.
    // Loaded here, not at the top: listing or inspecting images should not pay for the tar and zstd code.
    const { unpackLayer } = await import('./unpack.js');
    const res: UnpackResult = await unpackLayer(blobFile, fsDir, { ...opts, storedAs: blob });
    if (res.diffId !== diffId) {
      throw new VrunError(`${opts.what}: uncompressed content has digest ${res.diffId}, but the image config says ${diffId} (refused)`);
    }
    const meta: LayerMeta = {
      diffId,
      blob,
      uncompressedBytes: res.uncompressedBytes,
      entries: res.entries,
      compression: res.compression,
      skippedDevices: res.skippedDevices.slice(0, 100),
    };
    fs.writeFileSync(path.join(work, 'meta.json'), JSON.stringify(meta));
    return work;
  } catch (err) {
    removeTree(work);
    throw err;
  }
}

function install(l: StoreLayout, diffId: Digest, work: string): string {
  try {
    fs.renameSync(work, layerDir(l, diffId));
  } catch (err) {
    removeTree(work);
    throw err;
  }
  syncDir(l.layers);
  return layerFsDir(l, diffId);
}

export function readLayerMeta(l: StoreLayout, diffId: Digest): LayerMeta | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(layerDir(l, diffId), 'meta.json'), 'utf8')) as LayerMeta;
  } catch {
    return undefined;
  }
}
