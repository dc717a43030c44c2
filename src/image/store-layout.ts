import path from 'node:path';
import { vrunRoot } from '../common/paths.js';
import { VrunError } from '../common/errors.js';
import { digestHex, type Digest } from './digest.js';

/**
 * Where each kind of object lives in the image store. Everything trusted is reached by a final rename out of
 * `tmp/`, so an interrupted command leaves at most garbage in `tmp/` (collected by prune), never a
 * half-written blob or layer under a trusted name.
 */
/** The xattr that marks an opaque directory in an unpacked layer (overlayfs reads it; the copy fallback too). */
export const OPAQUE_XATTR = 'trusted.overlay.opaque';

export interface StoreLayout {
  root: string;
  /** Verified blobs: blobs/sha256/<hex>. */
  blobs: string;
  /** Unpacked layers in overlayfs format: layers/<diff-id hex>/ (complete once renamed into place). */
  layers: string;
  /** Partially downloaded blobs, kept so an interrupted pull resumes: partial/<hex>. */
  partial: string;
  /** Scratch space for objects being built; same filesystem as the rest so renames are atomic. */
  tmp: string;
  /** One directory per container rootfs (overlay upper/work, or the copied tree). */
  containers: string;
  locks: string;
  /** names -> images, see refs.ts */
  refsFile: string;
}

/** The image store's root: $VRUN_IMAGE_ROOT, else $VRUN_ROOT/images (the guest kernel cache is its sibling). */
export function imageStoreRoot(): string {
  const explicit = process.env.VRUN_IMAGE_ROOT;
  // Absolute only: a relative or empty value would scatter the store into whatever the working directory is.
  if (explicit !== undefined && explicit !== '') {
    if (!path.isAbsolute(explicit)) throw new VrunError(`VRUN_IMAGE_ROOT must be an absolute path (got "${explicit}")`);
    return explicit;
  }
  const root = vrunRoot();
  if (!path.isAbsolute(root)) throw new VrunError(`VRUN_ROOT must be an absolute path (got "${root}")`);
  return path.join(root, 'images');
}

export function storeLayout(root: string = imageStoreRoot()): StoreLayout {
  return {
    root,
    blobs: path.join(root, 'blobs', 'sha256'),
    layers: path.join(root, 'layers'),
    partial: path.join(root, 'partial'),
    tmp: path.join(root, 'tmp'),
    containers: path.join(root, 'containers'),
    locks: path.join(root, 'locks'),
    refsFile: path.join(root, 'refs.json'),
  };
}

export function blobPath(l: StoreLayout, d: Digest): string {
  return path.join(l.blobs, digestHex(d));
}

export function layerDir(l: StoreLayout, diffId: Digest): string {
  return path.join(l.layers, digestHex(diffId));
}

/** The directory overlayfs and the copy fallback read: the layer's tree itself. */
export function layerFsDir(l: StoreLayout, diffId: Digest): string {
  return path.join(layerDir(l, diffId), 'fs');
}

export function lockFile(l: StoreLayout, name: string): string {
  return path.join(l.locks, `${name}.lock`);
}
