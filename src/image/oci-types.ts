import { VrunError } from '../common/errors.js';
import { parseDigest, type Digest } from './digest.js';

/**
 * The OCI / Docker v2 schema 2 documents the store handles, and their validation. Everything here comes from
 * untrusted sources (registries, archives), so parsing is strict, bounded, and every failure names the document.
 */
export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

const LAYER_TYPES = new Set<string>([
  MediaType.ociLayer,
  MediaType.ociLayerGzip,
  MediaType.ociLayerZstd,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  MediaType.dockerLayerGzip,
  'application/vnd.docker.image.rootfs.diff.tar',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
]);
const CONFIG_TYPES = new Set<string>([MediaType.ociConfig, MediaType.dockerConfig]);
export const MANIFEST_TYPES = new Set<string>([MediaType.ociManifest, MediaType.dockerManifest]);
export const INDEX_TYPES = new Set<string>([MediaType.ociIndex, MediaType.dockerManifestList]);

/** Bounds on documents and counts: a registry or archive can claim anything. */
export const Limits = {
  manifestBytes: 4 << 20,
  configBytes: 8 << 20,
  layers: 512,
  indexEntries: 1024,
};

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

export interface Manifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** The runtime part of an image config: what the sandbox needs to start the container. */
export interface ContainerConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
  Labels?: Record<string, string> | null;
  StopSignal?: string;
  ExposedPorts?: Record<string, object> | null;
  Volumes?: Record<string, object> | null;
}

export interface ImageConfig {
  architecture: string;
  os: string;
  variant?: string;
  created?: string;
  author?: string;
  config?: ContainerConfig;
  rootfs: { type: 'layers'; diff_ids: Digest[] };
  history?: unknown[];
}

type Json = Record<string, unknown>;

export function parseJsonDocument(bytes: Uint8Array, what: string, maxBytes: number): Json {
  if (bytes.byteLength > maxBytes) throw new VrunError(`${what} is ${bytes.byteLength} bytes, more than the limit of ${maxBytes}`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (err) {
    throw new VrunError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new VrunError(`${what} is not a JSON object`);
  return value as Json;
}

function str(v: unknown, what: string, max = 1024): string {
  if (typeof v !== 'string') throw new VrunError(`${what} must be a string`);
  if (v.length > max) throw new VrunError(`${what} is longer than ${max} characters`);
  return v;
}

function optStringMap(v: unknown, what: string): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw new VrunError(`${what} must be an object of strings`);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v as Json)) out[k] = str(val, `${what}["${k.slice(0, 64)}"]`, 64 * 1024);
  return out;
}

export function parseDescriptor(v: unknown, what: string): Descriptor {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new VrunError(`${what} is not an object`);
  const o = v as Json;
  const size = o.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new VrunError(`${what}: invalid size ${String(size)}`);
  const d: Descriptor = {
    mediaType: str(o.mediaType, `${what}.mediaType`, 255),
    digest: parseDigest(o.digest, what),
    size,
  };
  if (o.platform !== undefined) {
    const p = o.platform as Json;
    if (typeof p !== 'object' || p === null) throw new VrunError(`${what}.platform is not an object`);
    d.platform = { os: str(p.os, `${what}.platform.os`, 64), architecture: str(p.architecture, `${what}.platform.architecture`, 64) };
    if (p.variant !== undefined) d.platform.variant = str(p.variant, `${what}.platform.variant`, 64);
  }
  const annotations = optStringMap(o.annotations, `${what}.annotations`);
  if (annotations) d.annotations = annotations;
  return d;
}

/** Works out what a fetched document is, from its own mediaType field or the transport's content type. */
export function documentKind(doc: Json, contentType: string | undefined, what: string): 'manifest' | 'index' {
  const declared = typeof doc.mediaType === 'string' ? doc.mediaType : (contentType ?? '').split(';')[0]?.trim() ?? '';
  if (declared === MediaType.dockerSchema1 || declared === MediaType.dockerSchema1Signed || doc.schemaVersion === 1) {
    throw new VrunError(`${what} uses Docker image manifest schema 1, which is deprecated and not supported: push the image again with a current client`);
  }
  if (INDEX_TYPES.has(declared)) return 'index';
  if (MANIFEST_TYPES.has(declared)) return 'manifest';
  // OCI allows omitting mediaType; fall back to the shape.
  if (Array.isArray(doc.manifests)) return 'index';
  if (doc.config !== undefined && Array.isArray(doc.layers)) return 'manifest';
  throw new VrunError(`${what} has unsupported media type "${declared.slice(0, 100)}" (not an image manifest or index)`);
}

export function parseManifest(doc: Json, what: string): Manifest {
  if (doc.schemaVersion !== 2) throw new VrunError(`${what}: unsupported schemaVersion ${String(doc.schemaVersion)}`);
  const mediaType = typeof doc.mediaType === 'string' ? doc.mediaType : MediaType.ociManifest;
  if (!MANIFEST_TYPES.has(mediaType)) throw new VrunError(`${what}: unexpected media type "${mediaType.slice(0, 100)}" for an image manifest`);
  const config = parseDescriptor(doc.config, `${what} config`);
  if (!CONFIG_TYPES.has(config.mediaType)) {
    throw new VrunError(`${what} is not a container image (its config has media type "${config.mediaType}")`);
  }
  if (config.size > Limits.configBytes) throw new VrunError(`${what}: image config of ${config.size} bytes exceeds the limit of ${Limits.configBytes}`);
  if (!Array.isArray(doc.layers)) throw new VrunError(`${what}: layers is not a list`);
  if (doc.layers.length > Limits.layers) throw new VrunError(`${what} has ${doc.layers.length} layers, more than the limit of ${Limits.layers}`);
  const layers = doc.layers.map((l, i) => {
    const d = parseDescriptor(l, `${what} layer ${i}`);
    if (!LAYER_TYPES.has(d.mediaType)) throw new VrunError(`${what} layer ${i} has unsupported media type "${d.mediaType}"`);
    return d;
  });
  const m: Manifest = { schemaVersion: 2, mediaType, config, layers };
  const annotations = optStringMap(doc.annotations, `${what} annotations`);
  if (annotations) m.annotations = annotations;
  return m;
}

export function parseIndex(doc: Json, what: string): ImageIndex {
  if (doc.schemaVersion !== 2) throw new VrunError(`${what}: unsupported schemaVersion ${String(doc.schemaVersion)}`);
  const mediaType = typeof doc.mediaType === 'string' ? doc.mediaType : MediaType.ociIndex;
  if (!Array.isArray(doc.manifests)) throw new VrunError(`${what}: manifests is not a list`);
  if (doc.manifests.length > Limits.indexEntries) throw new VrunError(`${what} lists ${doc.manifests.length} manifests, more than the limit of ${Limits.indexEntries}`);
  const manifests = doc.manifests.map((m, i) => parseDescriptor(m, `${what} entry ${i}`));
  const idx: ImageIndex = { schemaVersion: 2, mediaType, manifests };
  const annotations = optStringMap(doc.annotations, `${what} annotations`);
  if (annotations) idx.annotations = annotations;
  return idx;
}

function optStringList(v: unknown, what: string): string[] | null | undefined {
  if (v === undefined || v === null) return v;
  if (!Array.isArray(v)) throw new VrunError(`${what} must be a list of strings`);
  if (v.length > 4096) throw new VrunError(`${what} has more than 4096 entries`);
  return v.map((x, i) => str(x, `${what}[${i}]`, 128 * 1024));
}

export function parseImageConfig(doc: Json, what: string): ImageConfig {
  const rootfs = doc.rootfs as Json | undefined;
  if (typeof rootfs !== 'object' || rootfs === null) throw new VrunError(`${what}: rootfs missing`);
  if (rootfs.type !== 'layers') throw new VrunError(`${what}: rootfs.type must be "layers"`);
  if (!Array.isArray(rootfs.diff_ids)) throw new VrunError(`${what}: rootfs.diff_ids is not a list`);
  if (rootfs.diff_ids.length > Limits.layers) throw new VrunError(`${what}: more than ${Limits.layers} layers`);
  const diffIds = rootfs.diff_ids.map((d, i) => parseDigest(d, `${what} diff_id ${i}`));
  const cfg: ImageConfig = {
    architecture: str(doc.architecture ?? '', `${what}.architecture`, 64),
    os: str(doc.os ?? '', `${what}.os`, 64),
    rootfs: { type: 'layers', diff_ids: diffIds },
  };
  if (doc.variant !== undefined) cfg.variant = str(doc.variant, `${what}.variant`, 64);
  if (doc.created !== undefined && doc.created !== null) cfg.created = str(doc.created, `${what}.created`, 64);
  if (typeof doc.author === 'string') cfg.author = doc.author.slice(0, 1024);
  if (Array.isArray(doc.history)) cfg.history = doc.history;
  const c = doc.config as Json | undefined | null;
  if (c !== undefined && c !== null) {
    if (typeof c !== 'object' || Array.isArray(c)) throw new VrunError(`${what}.config is not an object`);
    const cc: ContainerConfig = {};
    const ep = optStringList(c.Entrypoint, `${what}.config.Entrypoint`);
    if (ep !== undefined) cc.Entrypoint = ep;
    const cmd = optStringList(c.Cmd, `${what}.config.Cmd`);
    if (cmd !== undefined) cc.Cmd = cmd;
    const env = optStringList(c.Env, `${what}.config.Env`);
    if (env !== undefined) cc.Env = env;
    if (c.WorkingDir !== undefined && c.WorkingDir !== null) cc.WorkingDir = str(c.WorkingDir, `${what}.config.WorkingDir`, 4096);
    if (c.User !== undefined && c.User !== null) cc.User = str(c.User, `${what}.config.User`, 256);
    if (c.StopSignal !== undefined && c.StopSignal !== null) cc.StopSignal = str(c.StopSignal, `${what}.config.StopSignal`, 32);
    const labels = optStringMap(c.Labels, `${what}.config.Labels`);
    if (labels) cc.Labels = labels;
    if (typeof c.ExposedPorts === 'object' && c.ExposedPorts !== null) cc.ExposedPorts = c.ExposedPorts as Record<string, object>;
    if (typeof c.Volumes === 'object' && c.Volumes !== null) cc.Volumes = c.Volumes as Record<string, object>;
    cfg.config = cc;
  }
  return cfg;
}

export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

/** Picks the linux/amd64 entry of an index (preferring no variant or v1), or explains what is on offer. */
export function selectPlatform(index: ImageIndex, what: string, want: Platform = DEFAULT_PLATFORM): Descriptor {
  const candidates = index.manifests.filter(
    (m) => MANIFEST_TYPES.has(m.mediaType) && m.platform?.os === want.os && m.platform.architecture === want.architecture,
  );
  const pick = candidates.find((m) => !m.platform?.variant || m.platform.variant === 'v1') ?? candidates[0];
  if (pick) return pick;
  // Single-manifest indexes without platform fields (common in OCI layouts) are taken as-is.
  const images = index.manifests.filter((m) => MANIFEST_TYPES.has(m.mediaType));
  if (images.length === 1 && !images[0]?.platform) return images[0] as Descriptor;
  const offered = [...new Set(index.manifests.map((m) => (m.platform ? `${m.platform.os}/${m.platform.architecture}${m.platform.variant ? `/${m.platform.variant}` : ''}` : 'unknown')))];
  throw new VrunError(`${what} has no image for ${want.os}/${want.architecture} (it offers: ${offered.join(', ') || 'nothing'})`);
}
