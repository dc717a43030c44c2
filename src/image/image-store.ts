import fs from 'node:fs';
import path from 'node:path';
import { VrunError } from '../common/errors.js';
import { digestHex, isDigest, type Digest } from './digest.js';
import { acquireLock, withLock } from './lock.js';
import { Limits, parseImageConfig, parseJsonDocument, parseManifest, type ContainerConfig, type Descriptor, type ImageConfig, type Manifest } from './oci-types.js';
import { familiarName, formatReference, looksLikeImageId, parseReference, repositoryName } from './reference.js';
import { blobPath, layerDir, layerFsDir, lockFile, storeLayout, type StoreLayout } from './store-layout.js';
import { hasBlob, putBlobBytes, readBlob } from './blob-store.js';
import { ensureLayer, hasLayer, type LayerOpts } from './layer-cache.js';
import { readRecords, updateRecords, upsertRecord, type ImageRecord } from './image-records.js';
import type { IdMap } from '../vmm/jail/idmap.js';
import { createRootfs, destroyRootfs, listRootfsRecords, readRootfsRecord, type RootfsMode } from './rootfs.js';
import { removeTree } from './atomic-fs.js';
import type { UnpackLimits } from './unpack.js';

/**
 * The image store: what `vrun run`, the shim and the image commands use. Resolve a reference to an image
 * (config + ordered layer directories), give each container its own writable rootfs, and keep the store
 * consistent when several vrun processes work at once. Garbage collection takes the store-wide "gc" lock
 * exclusively; every writer (pull, import, rootfs creation) holds it shared, so prune never deletes an
 * object a running command is about to reference.
 */
export interface ResolvedImage {
  /** The name as the user would write it ("busybox:latest"), or the short id for an untagged image. */
  name: string;
  /** Image id: the config digest. */
  id: Digest;
  manifestDigest: Digest;
  manifest: Manifest;
  config: ImageConfig;
  /** Entrypoint/Cmd/Env/WorkingDir/User (empty object if the image has none). */
  runtime: ContainerConfig;
  /** Unpacked layer directories, bottom layer first. */
  layerDirs: string[];
  record: ImageRecord;
}

export interface PreparedRootfs {
  containerId: string;
  path: string;
  mode: RootfsMode;
  image: ResolvedImage;
}

export interface CommitOptions {
  names?: string[];
  repoDigests?: string[];
  what?: string;
  limits?: UnpackLimits;
  onLayerBytes?: (n: number) => void;
  /**
   * Unpack the layers now (import, built-in images: a bad layer is refused before the image is named), or leave
   * them to the first use (pull: its blobs are verified, unpacking waits for `prepareRootfs`).
   */
  unpack?: boolean;
}

export interface PruneResult {
  images: string[];
  blobs: number;
  layers: number;
  bytes: number;
}

export class ImageStore {
  readonly layout: StoreLayout;

  constructor(root?: string) {
    this.layout = storeLayout(root);
  }

  list(): ImageRecord[] {
    return readRecords(this.layout);
  }

  /** Finds an image by name ("busybox", "localhost:5000/x:1"), name@digest, or an id prefix. */
  find(input: string): ImageRecord | undefined {
    const images = this.list();
    let ref;
    try {
      ref = parseReference(input);
    } catch (err) {
      if (!looksLikeImageId(input)) throw err;
    }
    if (ref) {
      if (ref.digest) {
        const repoDigest = `${repositoryName(ref)}@${ref.digest}`;
        const hit = images.find((r) => r.repoDigests.includes(repoDigest) || (r.manifest === ref.digest && r.names.some((n) => n.startsWith(`${repositoryName(ref)}:`))));
        if (hit) return hit;
        const byManifest = images.find((r) => r.manifest === ref.digest);
        if (byManifest) return byManifest;
      } else {
        const full = formatReference(ref);
        const hit = images.find((r) => r.names.includes(full));
        if (hit) return hit;
      }
    }
    if (looksLikeImageId(input)) {
      const hex = input.replace(/^sha256:/, '');
      const hits = images.filter((r) => digestHex(r.config).startsWith(hex) || digestHex(r.manifest).startsWith(hex));
      const ids = new Set(hits.map((r) => r.config));
      if (ids.size > 1) throw new VrunError(`image id prefix "${input}" is ambiguous (${ids.size} images match)`);
      return hits[0];
    }
    return undefined;
  }

  resolve(input: string): ResolvedImage {
    const rec = this.find(input);
    if (!rec) {
      throw new VrunError(`image "${input}" not found in the local store`, { kind: 'not-found', hint: `vrun pull ${input}` });
    }
    return this.load(rec, input);
  }

  private load(rec: ImageRecord, input: string): ResolvedImage {
    const l = this.layout;
    const manifest = parseManifest(parseJsonDocument(readBlob(l, rec.manifest, Limits.manifestBytes, 'manifest'), `manifest ${rec.manifest}`, Limits.manifestBytes), `manifest ${rec.manifest}`);
    const config = parseImageConfig(parseJsonDocument(readBlob(l, rec.config, Limits.configBytes, 'image config'), `image config ${rec.config}`, Limits.configBytes), `image config ${rec.config}`);
    if (manifest.layers.length !== config.rootfs.diff_ids.length) {
      throw new VrunError(`image "${input}": the manifest lists ${manifest.layers.length} layers but the config has ${config.rootfs.diff_ids.length} diff ids`);
    }
    // A layer is either unpacked or still a (verified) blob that its first use unpacks.
    const layerDirs = config.rootfs.diff_ids.map((d, i) => {
      if (!hasLayer(l, d) && !hasBlob(l, (manifest.layers[i] as Descriptor).digest)) {
        throw new VrunError(`image "${input}": layer ${d} is missing from the store: pull or import the image again`);
      }
      return layerFsDir(l, d);
    });
    const first = rec.names[0];
    return {
      name: first ? displayName(first) : digestHex(rec.config).slice(0, 12),
      id: rec.config,
      manifestDigest: rec.manifest,
      manifest,
      config,
      runtime: config.config ?? {},
      layerDirs,
      record: rec,
    };
  }

  /** Runs `fn` while holding the store's gc lock shared: prune waits until it returns. */
  async withWriteAccess<T>(fn: () => Promise<T>): Promise<T> {
    return withLock(lockFile(this.layout, 'gc'), fn, { shared: true });
  }

  /**
   * Records an image whose manifest and config blobs, and layer blobs, are already in blobs/: unpacks (or
   * reuses) every layer, checks each diff id against the config, then names it. Call inside withWriteAccess.
   */
  async commit(manifestBytes: Uint8Array, opts: CommitOptions = {}): Promise<ImageRecord> {
    const l = this.layout;
    const what = opts.what ?? 'image';
    const manifestDigest = putBlobBytes(l, manifestBytes, undefined, `${what} manifest`);
    const manifest = parseManifest(parseJsonDocument(manifestBytes, `${what} manifest`, Limits.manifestBytes), `${what} manifest`);
    const configBytes = readBlob(l, manifest.config.digest, Limits.configBytes, `${what} config`);
    const config = parseImageConfig(parseJsonDocument(configBytes, `${what} config`, Limits.configBytes), `${what} config`);
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== manifest.layers.length) {
      throw new VrunError(`${what}: the manifest lists ${manifest.layers.length} layers but the config has ${diffIds.length} diff ids`);
    }
    for (const [i, layer] of manifest.layers.entries()) {
      if (!hasBlob(l, layer.digest)) throw new VrunError(`${what}: layer ${i} (${layer.digest}) is missing`);
      if (opts.unpack === false) continue;
      const layerOpts: LayerOpts = { what: `${what} layer ${i} (${layer.digest.slice(0, 19)})` };
      if (opts.limits) layerOpts.limits = opts.limits;
      if (opts.onLayerBytes) layerOpts.onBytes = opts.onLayerBytes;
      await ensureLayer(l, diffIds[i] as Digest, layer.digest, layerOpts);
    }
    const names = (opts.names ?? []).map((n) => formatReference(parseReference(n)));
    const rec: ImageRecord = {
      manifest: manifestDigest,
      config: manifest.config.digest,
      diffIds,
      names,
      repoDigests: opts.repoDigests ?? [],
      size: manifest.config.size + manifest.layers.reduce((a, x) => a + x.size, 0),
      added: new Date().toISOString(),
    };
    return updateRecords(l, (images) => ({ ...upsertRecord(images, rec) }));
  }

  /** Gives a container its own writable rootfs at `targetDir` (which must be empty or absent). */
  async prepareRootfs(containerId: string, imageRef: string, targetDir: string, opts: { mode?: RootfsMode; idmap?: IdMap } = {}): Promise<PreparedRootfs> {
    return this.withWriteAccess(async () => {
      const image = this.resolve(imageRef);
      await this.unpackLayers(image);
      const rec = await createRootfs(
        this.layout,
        { containerId, image: image.name, manifest: image.manifestDigest, diffIds: image.config.rootfs.diff_ids, target: path.resolve(targetDir) },
        opts.mode,
        opts.idmap,
      );
      return { containerId, path: rec.target, mode: rec.mode, image };
    });
  }

  /**
   * Unpacks the image's layers that are still only blobs (a pulled image's first use), verifying each diff id.
   * The layer cache's per-layer lock makes concurrent first uses share one unpack: the others wait and reuse it.
   * Call inside withWriteAccess (prepareRootfs does), so prune cannot remove the blobs meanwhile.
   */
  async unpackLayers(image: ResolvedImage): Promise<void> {
    const l = this.layout;
    const todo = image.manifest.layers.map((layer, i) => ({ layer, i, diffId: image.config.rootfs.diff_ids[i] as Digest })).filter((x) => !hasLayer(l, x.diffId));
    // Two at a time: each unpack keeps a core busy decompressing and another creating files.
    const next = async (): Promise<void> => {
      for (let job = todo.shift(); job; job = todo.shift()) {
        await ensureLayer(l, job.diffId, job.layer.digest, { what: `image "${image.name}" layer ${job.i} (${job.layer.digest.slice(0, 19)})` });
      }
    };
    await Promise.all([next(), next()]);
  }

  /** Unmounts/removes a container's rootfs and forgets it; a no-op for an unknown id. */
  async releaseRootfs(containerId: string): Promise<void> {
    await destroyRootfs(this.layout, containerId);
  }

  rootfsOf(containerId: string) {
    return readRootfsRecord(this.layout, containerId);
  }

  /** Removes names (or, given an id, the whole image). Returns what was untagged/deleted. */
  async remove(input: string, opts: { force?: boolean } = {}): Promise<string[]> {
    const rec = this.find(input);
    if (!rec) throw new VrunError(`image "${input}" not found in the local store`, { kind: 'not-found' });
    const byName = !looksLikeImageId(input) || rec.names.some((n) => n === safeFormat(input));
    const out = await updateRecords(this.layout, (images) => {
      const cur = images.find((r) => r.manifest === rec.manifest);
      if (!cur) return [];
      const removed: string[] = [];
      if (byName && !parseReference(input).digest) {
        const full = safeFormat(input);
        cur.names = cur.names.filter((n) => n !== full);
        removed.push(`Untagged: ${displayName(full)}`);
      } else {
        removed.push(...cur.names.map((n) => `Untagged: ${displayName(n)}`));
        cur.names = [];
      }
      if (cur.names.length === 0) {
        const users = listRootfsRecords(this.layout).filter((c) => c.manifest === cur.manifest);
        if (users.length > 0 && !opts.force) {
          throw new VrunError(`image ${digestHex(cur.config).slice(0, 12)} is in use by container ${users[0]?.containerId} (remove the container first, or use --force)`);
        }
        images.splice(images.indexOf(cur), 1);
        removed.push(`Deleted: ${cur.config}`);
      }
      return removed;
    });
    await this.collect({ waitMs: 2000 });
    return out;
  }

  /** `vrun image prune`: drops untagged images (all unused ones with `all`), then unreferenced objects. */
  async prune(opts: { all?: boolean } = {}): Promise<PruneResult> {
    const removedImages = await updateRecords(this.layout, (images) => {
      const used = new Set(listRootfsRecords(this.layout).map((c) => c.manifest));
      const drop = images.filter((r) => !used.has(r.manifest) && (opts.all || r.names.length === 0));
      for (const r of drop) images.splice(images.indexOf(r), 1);
      return drop.map((r) => r.config);
    });
    const res = await this.collect({});
    return { ...res, images: removedImages };
  }

  /**
   * Deletes blobs and layers nothing references, and leftovers of interrupted commands in tmp/ and partial/.
   * With waitMs, gives up quietly if writers keep the store busy (the next prune will collect).
   */
  private async collect(opts: { waitMs?: number }): Promise<Omit<PruneResult, 'images'>> {
    const l = this.layout;
    const res = { blobs: 0, layers: 0, bytes: 0 };
    let lock;
    try {
      lock = await acquireLock(lockFile(l, 'gc'), opts.waitMs !== undefined ? { timeoutMs: opts.waitMs } : {});
    } catch (err) {
      if (opts.waitMs !== undefined) return res;
      throw err;
    }
    try {
      const liveBlobs = new Set<string>();
      const liveLayers = new Set<string>();
      for (const r of readRecords(l)) {
        liveBlobs.add(digestHex(r.manifest));
        liveBlobs.add(digestHex(r.config));
        for (const d of r.diffIds) liveLayers.add(digestHex(d));
        try {
          const m = parseManifest(parseJsonDocument(fs.readFileSync(blobPath(l, r.manifest)), 'manifest', Limits.manifestBytes), 'manifest');
          for (const x of m.layers) liveBlobs.add(digestHex(x.digest));
        } catch {
          // an unreadable manifest keeps nothing else alive; resolve will report it
        }
      }
      for (const c of listRootfsRecords(l)) for (const d of c.diffIds) liveLayers.add(digestHex(d));
      for (const name of listDir(l.blobs)) {
        if (liveBlobs.has(name)) continue;
        res.bytes += sizeOf(path.join(l.blobs, name));
        fs.rmSync(path.join(l.blobs, name), { force: true });
        res.blobs++;
      }
      for (const name of listDir(l.layers)) {
        if (liveLayers.has(name)) continue;
        const d = `sha256:${name}`;
        removeTree(isDigest(d) ? layerDir(l, d) : path.join(l.layers, name));
        res.layers++;
      }
      for (const name of listDir(l.tmp)) removeTree(path.join(l.tmp, name));
      if (opts.waitMs === undefined) for (const name of listDir(l.partial)) fs.rmSync(path.join(l.partial, name), { force: true });
    } finally {
      lock.release();
    }
    return res;
  }
}

function safeFormat(input: string): string {
  try {
    return formatReference(parseReference(input));
  } catch {
    return input;
  }
}

/** "docker.io/library/busybox:latest" -> "busybox:latest". */
export function displayName(full: string): string {
  const ref = parseReference(full);
  return `${familiarName(ref)}${ref.tag ? `:${ref.tag}` : ''}`;
}

function listDir(p: string): string[] {
  try {
    return fs.readdirSync(p);
  } catch {
    return [];
  }
}

function sizeOf(p: string): number {
  try {
    return fs.statSync(p).size;
  } catch {
    return 0;
  }
}

let defaultStore: ImageStore | undefined;

/** The store under $VRUN_IMAGE_ROOT or $VRUN_ROOT/images. */
export function openImageStore(root?: string): ImageStore {
  if (root !== undefined) return new ImageStore(root);
  defaultStore ??= new ImageStore();
  return defaultStore;
}
