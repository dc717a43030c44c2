import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageStore } from '../../src/image/image-store.js';
import { BUILTIN_BUSYBOX, ensureBuiltinImages } from '../../src/image/builtin.js';
import { cleanup, describeTree, tempDir } from './helpers.js';

describe('image store with the built-in busybox image', () => {
  let dir: string;
  let store: ImageStore;
  beforeAll(async () => {
    dir = tempDir('store');
    store = new ImageStore(path.join(dir, 'images'));
    const first = await ensureBuiltinImages(store);
    expect(first.created).toBe(true);
  });
  afterAll(() => cleanup(dir));

  it('is created once, deterministically, with two layers', async () => {
    const again = await ensureBuiltinImages(store);
    expect(again.created).toBe(false);
    const img = store.resolve('busybox');
    expect(img.layerDirs).toHaveLength(2);
    expect(img.runtime.Cmd).toEqual(['sh']);
    expect(store.resolve(BUILTIN_BUSYBOX).id).toBe(img.id);
    expect(store.resolve(img.id.slice(7, 19)).manifestDigest).toBe(img.manifestDigest);
  });

  for (const mode of ['overlay', 'copy'] as const) {
    it(`prepares a writable ${mode} rootfs with whiteouts applied, and releases it`, async () => {
      const target = path.join(dir, `rootfs-${mode}`);
      const r = await store.prepareRootfs(`c-${mode}`, 'busybox', target, { mode });
      expect(r.mode).toBe(mode);
      const tree = describeTree(target);
      expect(tree['bin/busybox']?.type).toBe('file');
      expect(tree['bin/sh']).toMatchObject({ type: 'symlink', link: 'busybox' });
      expect(tree['etc/build-only']).toBeUndefined(); // whiteout of layer 2
      expect(tree['var/spool/setup/stale']).toBeUndefined(); // opaque dir of layer 2
      expect(tree['var/spool/setup/ready']?.type).toBe('file');
      expect(tree['tmp']?.mode).toBe(0o1777);
      fs.writeFileSync(path.join(target, 'etc/hostname'), 'changed\n');
      // the change is private to this container: the shared layer is untouched
      const img = store.resolve('busybox');
      const lower = img.layerDirs.map((d) => path.join(d, 'etc/hostname')).find((p) => fs.existsSync(p)) as string;
      expect(fs.readFileSync(lower, 'utf8')).toBe('vrun\n');
      await store.releaseRootfs(`c-${mode}`);
      expect(fs.readdirSync(target)).toEqual([]);
      expect(store.rootfsOf(`c-${mode}`)).toBeUndefined();
    });
  }

  it('refuses to remove an image a container uses, then removes and prunes it', async () => {
    const target = path.join(dir, 'rootfs-busy');
    await store.prepareRootfs('busy', 'busybox', target);
    await expect(store.remove('busybox')).rejects.toThrow(/in use by container busy/);
    await store.releaseRootfs('busy');
    const out = await store.remove('busybox');
    expect(out.join('\n')).toMatch(/Untagged: busybox:latest/);
    expect(store.list()).toEqual([]);
    const pruned = await store.prune();
    expect(fs.readdirSync(store.layout.blobs)).toEqual([]);
    expect(fs.readdirSync(store.layout.layers)).toEqual([]);
    expect(pruned.images).toEqual([]);
  });
});
