import fs from 'node:fs';
import path from 'node:path';
import { VrunError } from '../common/errors.js';
import { parseDigest, sha256, type Digest } from './digest.js';
import { tarSource, directorySource, type ArchiveSource } from './archive-source.js';
import type { ImageStore } from './image-store.js';
import type { ImageRecord } from './image-records.js';
import { hasBlob, putBlobBytes, putBlobFile } from './blob-store.js';
import { detectCompression } from './layer-stream.js';
import { Limits, MediaType, documentKind, parseIndex, parseJsonDocument, parseManifest, selectPlatform, type Descriptor } from './oci-types.js';
import { parseReference } from './reference.js';
import { removeTree } from './atomic-fs.js';

/**
 * `vrun import`: docker-archive tars (`docker save`, `podman save`, skopeo's docker-archive:), OCI image layout
 * directories and OCI archives (a layout in a tar). Every blob is checked against the digest the archive
 * claims for it, and layers against the config's diff ids, before the image gets a name.
 */
export interface ImportOptions {
  /** Name for the imported image (only when the archive holds exactly one). */
  name?: string;
  onStep?: (msg: string) => void;
}

const REF_NAME = 'org.opencontainers.image.ref.name';
const CONTAINERD_NAME = 'io.containerd.image.name';

export async function importImage(store: ImageStore, input: string, opts: ImportOptions = {}): Promise<ImageRecord[]> {
  let st: fs.Stats;
  try {
    st = fs.statSync(input);
  } catch {
    throw new VrunError(`cannot import "${input}": no such file or directory`);
  }
  return store.withWriteAccess(async () => {
    if (st.isDirectory()) {
      const src = directorySource(input);
      if (!src.file('index.json')) throw new VrunError(`${input} is a directory but not an OCI image layout (no index.json)`);
      return importLayout(store, src, opts);
    }
    fs.mkdirSync(store.layout.tmp, { recursive: true });
    const scratch = fs.mkdtempSync(path.join(store.layout.tmp, `import-${process.pid}-`));
    try {
      opts.onStep?.(`Reading ${input}`);
      const src = await tarSource(input, scratch);
      if (src.file('index.json') && src.file('oci-layout')) return await importLayout(store, src, opts);
      if (src.file('manifest.json')) return await importDockerArchive(store, src, opts);
      throw new VrunError(`${input} is neither a docker-archive (no manifest.json) nor an OCI archive (no index.json + oci-layout)`);
    } finally {
      removeTree(scratch);
    }
  });
}

function readMember(src: ArchiveSource, name: string, max: number): Buffer {
  const f = src.file(name);
  if (!f) throw new VrunError(`${src.what}: member "${name}" is missing`);
  const size = fs.statSync(f).size;
  if (size > max) throw new VrunError(`${src.what}: member "${name}" is ${size} bytes, more than the limit of ${max}`);
  return fs.readFileSync(f);
}

function blobMember(d: Digest): string {
  return `blobs/sha256/${d.slice(7)}`;
}

async function storeDescriptorBlob(store: ImageStore, src: ArchiveSource, d: Descriptor, what: string): Promise<void> {
  if (hasBlob(store.layout, d.digest)) return;
  const f = src.file(blobMember(d.digest));
  if (!f) throw new VrunError(`${src.what}: ${what} blob ${d.digest} is missing`);
  await putBlobFile(store.layout, f, d.digest, `${src.what}: ${what}`, { moveOk: src.spooled, size: d.size });
}

function checkedDoc(src: ArchiveSource, d: Descriptor, what: string): Buffer {
  const bytes = readMember(src, blobMember(d.digest), Limits.manifestBytes);
  const actual = sha256(bytes);
  if (actual !== d.digest) throw new VrunError(`${src.what}: ${what} ${d.digest} has content with digest ${actual} (refused: the archive lies about it)`);
  return bytes;
}

function namesFor(desc: Descriptor, opts: ImportOptions): string[] {
  if (opts.name) return [opts.name];
  const full = desc.annotations?.[CONTAINERD_NAME];
  const refName = desc.annotations?.[REF_NAME];
  for (const candidate of [full, refName]) {
    // A bare tag ("latest") names nothing on its own; a full reference has a repository part.
    if (candidate && /[/:]/.test(candidate)) {
      try {
        parseReference(candidate);
        return [candidate];
      } catch {
        // not a usable reference: leave the image untagged
      }
    }
  }
  return [];
}

async function importLayout(store: ImageStore, src: ArchiveSource, opts: ImportOptions): Promise<ImageRecord[]> {
  const layoutFile = src.file('oci-layout');
  if (layoutFile) {
    const doc = parseJsonDocument(fs.readFileSync(layoutFile), `${src.what}: oci-layout`, 4096);
    if (doc.imageLayoutVersion !== '1.0.0') throw new VrunError(`${src.what}: unsupported OCI layout version ${String(doc.imageLayoutVersion)}`);
  }
  const index = parseIndex(parseJsonDocument(readMember(src, 'index.json', Limits.manifestBytes), `${src.what}: index.json`, Limits.manifestBytes), `${src.what}: index.json`);
  if (index.manifests.length === 0) throw new VrunError(`${src.what}: index.json lists no images`);
  if (opts.name && index.manifests.length > 1) throw new VrunError(`${src.what} holds ${index.manifests.length} images: import it without a name`);
  const out: ImageRecord[] = [];
  for (const [i, top] of index.manifests.entries()) {
    const what = `image ${i}`;
    let desc = top;
    let bytes = checkedDoc(src, desc, `${what} manifest`);
    const doc = parseJsonDocument(bytes, `${src.what}: ${what}`, Limits.manifestBytes);
    if (documentKind(doc, desc.mediaType, `${src.what}: ${what}`) === 'index') {
      desc = selectPlatform(parseIndex(doc, `${src.what}: ${what}`), `${src.what}: ${what}`);
      bytes = checkedDoc(src, desc, `${what} manifest`);
    }
    const manifest = parseManifest(parseJsonDocument(bytes, `${src.what}: ${what} manifest`, Limits.manifestBytes), `${src.what}: ${what} manifest`);
    opts.onStep?.(`Importing ${what} (${manifest.layers.length} layers)`);
    await storeDescriptorBlob(store, src, manifest.config, `${what} config`);
    for (const [j, layer] of manifest.layers.entries()) await storeDescriptorBlob(store, src, layer, `${what} layer ${j}`);
    out.push(await store.commit(bytes, { names: namesFor(top, opts), what: `${src.what} ${what}` }));
  }
  return out;
}

interface DockerArchiveEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

function parseDockerManifest(bytes: Buffer, what: string): DockerArchiveEntry[] {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new VrunError(`${what}: manifest.json is not valid JSON`);
  }
  if (!Array.isArray(v) || v.length === 0) throw new VrunError(`${what}: manifest.json is not a non-empty list`);
  if (v.length > Limits.indexEntries) throw new VrunError(`${what}: manifest.json lists too many images`);
  return v.map((e: unknown, i) => {
    const o = e as Record<string, unknown>;
    const strs = (x: unknown, field: string, max: number): string[] => {
      if (x === null || x === undefined) return [];
      if (!Array.isArray(x) || x.length > max || x.some((s) => typeof s !== 'string')) throw new VrunError(`${what}: manifest.json entry ${i}: ${field} is not a list of strings`);
      return x as string[];
    };
    if (typeof o !== 'object' || o === null || typeof o.Config !== 'string') throw new VrunError(`${what}: manifest.json entry ${i} has no Config`);
    return { Config: o.Config, RepoTags: strs(o.RepoTags, 'RepoTags', 256), Layers: strs(o.Layers, 'Layers', Limits.layers) };
  });
}

async function importDockerArchive(store: ImageStore, src: ArchiveSource, opts: ImportOptions): Promise<ImageRecord[]> {
  const entries = parseDockerManifest(readMember(src, 'manifest.json', Limits.manifestBytes), src.what);
  if (opts.name && entries.length > 1) throw new VrunError(`${src.what} holds ${entries.length} images: import it without a name`);
  const out: ImageRecord[] = [];
  for (const [i, e] of entries.entries()) {
    const what = `image ${i}`;
    opts.onStep?.(`Importing ${what} (${e.Layers.length} layers)`);
    const configBytes = readMember(src, e.Config, Limits.configBytes);
    const configDigest = sha256(configBytes);
    // The config's member name is its digest (<hex>.json or blobs/sha256/<hex>): hold the archive to it.
    const claimed = /([a-f0-9]{64})(?:\.json)?$/.exec(e.Config)?.[1];
    if (claimed !== undefined && `sha256:${claimed}` !== configDigest) {
      throw new VrunError(`${src.what}: ${what} config "${e.Config}" has content with digest ${configDigest} (refused: the archive lies about it)`);
    }
    putBlobBytes(store.layout, configBytes, configDigest, `${what} config`);
    const layers: Descriptor[] = [];
    for (const [j, name] of e.Layers.entries()) {
      const f = src.file(name);
      if (!f) throw new VrunError(`${src.what}: ${what} layer ${j} "${name}" is missing`);
      const head = Buffer.alloc(4);
      const fd = fs.openSync(f, 'r');
      try {
        fs.readSync(fd, head, 0, 4, 0);
      } finally {
        fs.closeSync(fd);
      }
      const size = fs.statSync(f).size;
      const compression = detectCompression(head);
      // Copy rather than move: a de-duplicated archive may name one member for several layers.
      const digest = await putBlobFile(store.layout, f, undefined, `${src.what}: ${what} layer ${j}`);
      const mediaType = compression === 'gzip' ? MediaType.ociLayerGzip : compression === 'zstd' ? MediaType.ociLayerZstd : MediaType.ociLayer;
      layers.push({ mediaType, digest: parseDigest(digest, 'layer'), size });
    }
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: { mediaType: MediaType.ociConfig, digest: configDigest, size: configBytes.length },
        layers,
      }),
    );
    const names = opts.name ? [opts.name] : e.RepoTags.filter((t) => t !== '<none>:<none>');
    out.push(await store.commit(manifest, { names, what: `${src.what} ${what}` }));
  }
  return out;
}
