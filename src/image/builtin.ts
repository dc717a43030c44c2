import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { MissingDependencyError, VrunError } from '../common/errors.js';
import type { ImageStore } from './image-store.js';
import { putBlobBytes } from './blob-store.js';
import { buildImage, buildLayer, type BuiltImage, type LayerEntry } from './oci-build.js';
import type { ImageRecord } from './image-records.js';

/**
 * The built-in `busybox` image, made offline from Debian's busybox-static. Two layers on purpose: the second
 * deletes a file and replaces a directory of the first (a whiteout and an opaque directory), so every
 * container started from the default image exercises the store's layer semantics.
 */
export const BUILTIN_BUSYBOX = 'busybox:latest';
const BUSYBOX_BIN = '/bin/busybox';

export async function buildBusyboxImage(busyboxPath = BUSYBOX_BIN): Promise<BuiltImage> {
  if (!fs.existsSync(busyboxPath)) throw new MissingDependencyError(busyboxPath, 'busybox-static');
  const binary = fs.readFileSync(busyboxPath);
  const applets = execFileSync(busyboxPath, ['--list'], { encoding: 'utf8' })
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => /^[a-z0-9_.[-]+$/i.test(s) && s !== 'busybox');
  if (!applets.includes('sh')) throw new VrunError(`${busyboxPath} has no "sh" applet: is it busybox-static?`);
  const text = (s: string) => Buffer.from(s);
  const dir = (name: string, mode = 0o755): LayerEntry => ({ name, type: 'directory', mode });
  const base: LayerEntry[] = [
    dir('bin'),
    dir('dev'),
    dir('etc'),
    dir('home'),
    dir('proc', 0o555),
    dir('root', 0o700),
    dir('sys', 0o555),
    dir('tmp', 0o1777),
    dir('usr'),
    dir('var'),
    dir('var/spool'),
    dir('var/spool/setup'),
    { name: 'bin/busybox', type: 'file', mode: 0o755, data: binary },
    ...applets.map((a): LayerEntry => ({ name: `bin/${a}`, type: 'symlink', linkname: 'busybox', mode: 0o777 })),
    { name: 'etc/passwd', type: 'file', data: text('root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n') },
    { name: 'etc/group', type: 'file', data: text('root:x:0:\nnobody:x:65534:\n') },
    { name: 'etc/hostname', type: 'file', data: text('vrun\n') },
    { name: 'etc/build-only', type: 'file', data: text('removed by the second layer\n') },
    { name: 'var/spool/setup/stale', type: 'file', data: text('hidden by the opaque directory of the second layer\n') },
  ];
  const top: LayerEntry[] = [
    dir('etc'),
    { name: 'etc/.wh.build-only', type: 'file', mode: 0o600 },
    { name: 'etc/os-release', type: 'file', data: text('NAME="vrun busybox"\nID=busybox\nPRETTY_NAME="vrun built-in busybox"\n') },
    dir('var'),
    dir('var/spool'),
    dir('var/spool/setup'),
    { name: 'var/spool/setup/.wh..wh..opq', type: 'file', mode: 0o600 },
    { name: 'var/spool/setup/ready', type: 'file', data: text('ok\n') },
  ];
  const layers = [await buildLayer(base), await buildLayer(top)];
  return buildImage(layers, { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] });
}

/** Stores an in-memory image and names it (caller holds nothing; this takes the write lock itself). */
export async function storeBuiltImage(store: ImageStore, img: BuiltImage, names: string[]): Promise<ImageRecord> {
  return store.withWriteAccess(async () => {
    const l = store.layout;
    putBlobBytes(l, img.config, img.configDigest, 'image config');
    for (const layer of img.layers) putBlobBytes(l, layer.blob, layer.digest, 'layer');
    return store.commit(img.manifest, { names, what: names[0] ?? 'image' });
  });
}

/** Creates (or re-creates, if it changed or is damaged) the built-in busybox image. Returns whether it was written. */
export async function ensureBuiltinImages(store: ImageStore): Promise<{ created: boolean; record: ImageRecord }> {
  const img = await buildBusyboxImage();
  const existing = store.find(BUILTIN_BUSYBOX);
  if (existing && existing.manifest === img.manifestDigest) {
    try {
      store.resolve(BUILTIN_BUSYBOX);
      return { created: false, record: existing };
    } catch {
      // damaged: fall through and store it again
    }
  }
  return { created: true, record: await storeBuiltImage(store, img, [BUILTIN_BUSYBOX]) };
}
