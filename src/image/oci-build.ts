import zlib from 'node:zlib';
import tar from 'tar-stream';
import { sha256, type Digest } from './digest.js';
import { MediaType, type ContainerConfig } from './oci-types.js';

/**
 * Builds small OCI images in memory: layer tars from a list of entries, gzip-compressed, plus the config and
 * manifest that describe them. Used for the built-in image (and by tests and benchmarks to make fixtures).
 * Output is deterministic: same entries, same digests.
 */
export interface LayerEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'link' | 'fifo' | 'character-device' | 'block-device';
  mode?: number;
  uid?: number;
  gid?: number;
  data?: Uint8Array;
  linkname?: string;
  mtime?: Date;
  pax?: Record<string, string>;
  devmajor?: number;
  devminor?: number;
}

export interface BuiltLayer {
  tar: Buffer;
  blob: Buffer;
  diffId: Digest;
  digest: Digest;
  mediaType: string;
}

export interface BuiltImage {
  layers: BuiltLayer[];
  config: Buffer;
  configDigest: Digest;
  manifest: Buffer;
  manifestDigest: Digest;
}

const FIXED_TIME = new Date('2024-01-01T00:00:00Z');

export async function buildTar(entries: LayerEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const header = {
      name: e.name,
      type: e.type,
      mode: e.mode ?? (e.type === 'directory' ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: e.mtime ?? FIXED_TIME,
      linkname: e.linkname,
      size: e.type === 'file' ? (e.data?.length ?? 0) : 0,
      devmajor: e.devmajor ?? 0,
      devminor: e.devminor ?? 0,
      pax: e.pax,
    } as tar.Header;
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (e.type === 'file') pack.entry(header, Buffer.from(e.data ?? new Uint8Array(0)), cb);
      else pack.entry(header, cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export async function buildLayer(entries: LayerEntry[], compression: 'gzip' | 'none' = 'gzip'): Promise<BuiltLayer> {
  const t = await buildTar(entries);
  const blob = compression === 'gzip' ? zlib.gzipSync(t, { level: 6 }) : t;
  return {
    tar: t,
    blob,
    diffId: sha256(t),
    digest: sha256(blob),
    mediaType: compression === 'gzip' ? MediaType.ociLayerGzip : MediaType.ociLayer,
  };
}

export function buildImage(layers: BuiltLayer[], runtime: ContainerConfig, created = FIXED_TIME.toISOString()): BuiltImage {
  const config = Buffer.from(
    JSON.stringify({
      created,
      architecture: 'amd64',
      os: 'linux',
      config: runtime,
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map(() => ({ created, created_by: 'vrun' })),
    }),
  );
  const configDigest = sha256(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: configDigest, size: config.length },
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.blob.length })),
    }),
  );
  return { layers, config, configDigest, manifest, manifestDigest: sha256(manifest) };
}
