import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageStore } from '../../src/image/image-store.js';
import { importImage } from '../../src/image/import.js';
import { ensureBuiltinImages } from '../../src/image/builtin.js';
import { cleanup, describeTree, tempDir } from './helpers.js';
import { buildFixtureLayout, manifestDigestOf, run, skopeoCopy, umociRootfs } from './fixtures.js';

describe('import of archives written by podman, skopeo and umoci', () => {
  let dir: string;
  let layout: string;
  let reference: ReturnType<typeof describeTree>;
  let podman: (...args: string[]) => string;
  beforeAll(() => {
    dir = tempDir('import');
    layout = buildFixtureLayout(dir);
    reference = describeTree(umociRootfs(layout, 'v2', path.join(dir, 'umoci')));
    const p = ['--root', path.join(dir, 'podman-root'), '--runroot', path.join(dir, 'podman-run'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'none'];
    podman = (...args: string[]) => run('podman', [...p, ...args]);
    const id = podman('pull', '-q', `oci:${layout}:v2`).trim();
    podman('tag', id, 'localhost/fixture:v2');
    podman('save', '-q', '--format', 'docker-archive', '-o', path.join(dir, 'podman-docker.tar'), 'localhost/fixture:v2');
    podman('save', '-q', '--format', 'oci-archive', '-o', path.join(dir, 'podman-oci.tar'), 'localhost/fixture:v2');
    skopeoCopy(`oci:${layout}:v2`, `docker-archive:${path.join(dir, 'skopeo-docker.tar')}:example.com/skopeo/fixture:v2`);
    skopeoCopy(`oci:${layout}:v2`, `oci-archive:${path.join(dir, 'skopeo-oci.tar')}:v2`);
  });
  afterAll(() => cleanup(dir));

  const cases: [string, string, string | undefined, string][] = [
    ['a podman save docker-archive (with de-duplicating symlinks)', 'podman-docker.tar', undefined, 'localhost/fixture:v2'],
    ['a podman save oci-archive', 'podman-oci.tar', undefined, 'localhost/fixture:v2'],
    ['a skopeo docker-archive', 'skopeo-docker.tar', undefined, 'example.com/skopeo/fixture:v2'],
    ['a skopeo oci-archive, named on import', 'skopeo-oci.tar', 'mine:1', 'mine:1'],
    ['an OCI layout directory, named on import', 'layout', 'fromdir:v2', 'fromdir:v2'],
  ];
  for (const [what, file, name, expectName] of cases) {
    it(`imports ${what}; its rootfs matches umoci unpack`, async () => {
      const store = new ImageStore(path.join(dir, `store-${file}`));
      const src = file === 'layout' ? layout : path.join(dir, file);
      // a layout dir holds several tags: import just v2 by copying it to a one-image layout
      const input = file === 'layout' ? oneTagLayout(layout, 'v2', path.join(dir, 'layout-v2')) : src;
      const recs = await importImage(store, input, name ? { name } : {});
      expect(recs).toHaveLength(1);
      const img = store.resolve(expectName);
      expect(img.runtime.Env).toContain('FOO=bar');
      const target = path.join(dir, `rootfs-${file}`);
      await store.prepareRootfs('c1', expectName, target, { mode: file.includes('oci') ? 'overlay' : 'copy' });
      expect(describeTree(target)).toEqual(reference);
      await store.releaseRootfs('c1');
      expect(fs.readdirSync(store.layout.tmp)).toEqual([]);
    });
  }

  it('refuses an OCI layout whose manifest digest lies, and keeps the store intact', async () => {
    const store = new ImageStore(path.join(dir, 'store-liar'));
    await ensureBuiltinImages(store);
    const liar = oneTagLayout(layout, 'v2', path.join(dir, 'liar'));
    const m = manifestDigestOf(liar, 'v2').slice(7);
    const file = path.join(liar, 'blobs', 'sha256', m);
    fs.writeFileSync(file, `${fs.readFileSync(file, 'utf8')} `);
    await expect(importImage(store, liar, { name: 'liar:1' })).rejects.toThrow(/manifest sha256:[a-f0-9]+ has content with digest sha256:[a-f0-9]+ \(refused: the archive lies about it\)/);
    expect(store.list().map((r) => r.names)).toEqual([['docker.io/library/busybox:latest']]);
    expect(store.find('liar:1')).toBeUndefined();
  });

  it('refuses a docker-archive whose layer does not match the config diff ids', async () => {
    const store = new ImageStore(path.join(dir, 'store-liar2'));
    const bad = path.join(dir, 'bad-archive');
    fs.mkdirSync(bad);
    run('tar', ['-xf', path.join(dir, 'skopeo-docker.tar'), '-C', bad]);
    const manifest = JSON.parse(fs.readFileSync(path.join(bad, 'manifest.json'), 'utf8')) as { Layers: string[] }[];
    const layer = path.join(bad, manifest[0]?.Layers[0] as string);
    fs.writeFileSync(layer, Buffer.concat([fs.readFileSync(layer), Buffer.alloc(1024)]));
    run('tar', ['-cf', path.join(dir, 'bad.tar'), '-C', bad, '.']);
    await expect(importImage(store, path.join(dir, 'bad.tar'))).rejects.toThrow(/uncompressed content has digest .* but the image config says/);
    expect(store.list()).toEqual([]);
    expect(fs.readdirSync(store.layout.tmp)).toEqual([]);
  });

  it('refuses things that are not image archives with a clear error', async () => {
    const store = new ImageStore(path.join(dir, 'store-junk'));
    fs.writeFileSync(path.join(dir, 'junk.tar'), 'not a tar at all, just text\n'.repeat(100));
    await expect(importImage(store, path.join(dir, 'junk.tar'))).rejects.toThrow(/junk\.tar/);
    await expect(importImage(store, path.join(dir, 'missing.tar'))).rejects.toThrow(/no such file/);
    await expect(importImage(store, path.join(dir, 'umoci'))).rejects.toThrow(/not an OCI image layout/);
  });
});

/** A copy of the layout whose index.json lists only `tag`. */
function oneTagLayout(layout: string, tag: string, dest: string): string {
  fs.cpSync(layout, dest, { recursive: true });
  const index = JSON.parse(fs.readFileSync(path.join(dest, 'index.json'), 'utf8')) as { manifests: { annotations?: Record<string, string> }[] };
  index.manifests = index.manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  fs.writeFileSync(path.join(dest, 'index.json'), JSON.stringify(index));
  return dest;
}
