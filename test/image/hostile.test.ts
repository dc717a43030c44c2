import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageStore } from '../../src/image/image-store.js';
import { ensureBuiltinImages, storeBuiltImage } from '../../src/image/builtin.js';
import { buildImage, buildLayer, buildTar, type BuiltImage, type BuiltLayer, type LayerEntry } from '../../src/image/oci-build.js';
import type { UnpackLimits } from '../../src/image/unpack.js';
import { sha256 } from '../../src/image/digest.js';
import { MediaType } from '../../src/image/oci-types.js';
import { cleanup, listAll, tempDir } from './helpers.js';

/**
 * A corpus of hostile layers, each stored through the same path a pull or import takes. Every one must be
 * refused with an error naming the entry, nothing may appear outside the store, and the store must still list
 * only the intact image it had before.
 */
describe('hostile layers', () => {
  let dir: string;
  let outside: string;
  let store: ImageStore;
  let intactLayers: string[];
  beforeAll(async () => {
    dir = tempDir('hostile');
    outside = path.join(dir, 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'secret'), 'original\n');
    store = new ImageStore(path.join(dir, 'store', 'images'));
    await ensureBuiltinImages(store);
    intactLayers = fs.readdirSync(store.layout.layers).sort();
  });
  afterAll(() => cleanup(dir));

  function expectStoreIntact(): void {
    expect(listAll(outside)).toEqual([path.join(outside, 'secret')]);
    expect(fs.readFileSync(path.join(outside, 'secret'), 'utf8')).toBe('original\n');
    expect(store.list().map((r) => r.names)).toEqual([['docker.io/library/busybox:latest']]);
    expect(fs.readdirSync(store.layout.layers).sort()).toEqual(intactLayers);
    expect(fs.readdirSync(store.layout.tmp)).toEqual([]);
    expect(store.find('evil')).toBeUndefined();
    expect(store.resolve('busybox').layerDirs).toHaveLength(2);
  }

  async function storeEvil(layers: BuiltLayer[]): Promise<void> {
    await storeBuiltImage(store, buildImage(layers, { Cmd: ['sh'] }), ['evil:latest']);
  }

  /** Stores a one-layer image's blobs and commits it under `name` with unpack limits tighter than the defaults. */
  async function commitWithLimits(img: BuiltImage, layerBlob: Buffer, name: string, limits: UnpackLimits): Promise<unknown> {
    return store.withWriteAccess(async () => {
      const { putBlobBytes } = await import('../../src/image/blob-store.js');
      putBlobBytes(store.layout, img.config);
      putBlobBytes(store.layout, layerBlob);
      return store.commit(img.manifest, { names: [name], limits });
    });
  }

  const file = (name: string, data = 'x'): LayerEntry => ({ name, type: 'file', data: Buffer.from(data) });
  const rel = () => path.relative(path.join(dir, 'store', 'images', 'tmp', 'layer-x', 'fs'), outside);

  const cases: [string, () => LayerEntry[], RegExp][] = [
    ['path traversal with ..', () => [file(`${rel()}/pwned`)], /entry ".*pwned" contains "\.\."/],
    ['an absolute path', () => [file(`${outside}/pwned`)], /entry "\/.*pwned" has an absolute path/],
    ['a symlink escape (write through a symlinked parent)', () => [{ name: 'esc', type: 'symlink', linkname: outside }, file('esc/pwned')], /entry "esc\/pwned": parent "esc" is a symlink/],
    ['a relative symlink escape', () => [{ name: 'a', type: 'directory' }, { name: 'a/up', type: 'symlink', linkname: '../../../../../../../..' }, file(`a/up${outside}/pwned`)], /parent "a\/up" is a symlink/],
    ['a hardlink escape with ..', () => [{ name: 'h', type: 'link', linkname: `${rel()}/secret` }], /entry "h" \(hardlink target\): entry .* contains "\.\."/],
    ['a hardlink to an absolute path', () => [{ name: 'h', type: 'link', linkname: `${outside}/secret` }], /hardlink target\): entry "\/.*secret" has an absolute path/],
    ['a hardlink through a symlinked directory', () => [{ name: 'd', type: 'symlink', linkname: outside }, { name: 'h', type: 'link', linkname: 'd/secret' }], /entry "h": hardlink target's parent "d" is not a directory of this layer/],
    ['a hardlink to a file of no layer', () => [{ name: 'h', type: 'link', linkname: 'etc/passwd' }], /entry "h": hardlink target's parent "etc" is not a directory|is not in this layer/],
    // Small files are created in the background while later entries are read: a later entry that swaps a
    // directory for a symlink must not redirect them, nor may a file still being written pass for a parent.
    [
      'a directory swapped for a symlink while its files are still being written',
      () => [{ name: 'd', type: 'directory' }, ...Array.from({ length: 20 }, (_, i) => file(`d/f${i}`)), { name: 'd', type: 'symlink', linkname: outside }, file('d/pwned')],
      /entry "d\/pwned": parent "d" is a symlink/,
    ],
    ['a file used as a parent right after it was written', () => [...Array.from({ length: 20 }, (_, i) => file(`f${i}`)), file('p'), file('p/child')], /entry "p\/child": parent "p" is not a directory/],
  ];
  // gzip layers go through the stream path; uncompressed ones are parsed in place from the blob file.
  for (const compression of ['gzip', 'none'] as const) {
    for (const [what, entries, err] of cases) {
      it(`refuses ${what} (${compression})`, async () => {
        await expect(storeEvil([await buildLayer(entries(), compression)])).rejects.toThrow(err);
        expectStoreIntact();
      });
    }
  }

  it('replaces a symlink to an outside file instead of writing through it', async () => {
    const layer = await buildLayer([{ name: 'victim', type: 'symlink', linkname: `${outside}/secret` }, file('victim', 'overwritten?\n')]);
    await storeEvil([layer]);
    const img = store.resolve('evil');
    expect(fs.lstatSync(path.join(img.layerDirs[0] as string, 'victim')).isFile()).toBe(true);
    expect(fs.readFileSync(path.join(outside, 'secret'), 'utf8')).toBe('original\n');
    await store.remove('evil');
    expectStoreIntact();
  });

  it('replaces a symlinked directory by a real one, and never writes through a hardlinked symlink', async () => {
    const layer = await buildLayer([
      { name: 'd', type: 'symlink', linkname: outside },
      { name: 'd', type: 'directory' },
      file('d/secret', 'inside the layer\n'),
      { name: 's', type: 'symlink', linkname: `${outside}/secret` },
      { name: 'h', type: 'link', linkname: 's' },
      file('h', 'replaces the link, not its target\n'),
      file('twice', 'first\n'),
      file('twice', 'second\n'),
    ]);
    await storeEvil([layer]);
    const d = store.resolve('evil').layerDirs[0] as string;
    expect(fs.lstatSync(path.join(d, 'd')).isDirectory()).toBe(true);
    expect(fs.readFileSync(path.join(d, 'd/secret'), 'utf8')).toBe('inside the layer\n');
    expect(fs.lstatSync(path.join(d, 'h')).isFile()).toBe(true);
    expect(fs.readFileSync(path.join(d, 'twice'), 'utf8')).toBe('second\n');
    await store.remove('evil');
    expectStoreIntact();
  });

  it('refuses a whiteout that names the parent directory', async () => {
    await expect(storeEvil([await buildLayer([{ name: 'a', type: 'directory' }, file('a/.wh..')])])).rejects.toThrow(/entry "a\/\.wh\.\.": invalid whiteout/);
    expectStoreIntact();
  });

  it('does not create device nodes from a layer', async () => {
    const layer = await buildLayer([{ name: 'sda', type: 'block-device', devmajor: 8, devminor: 0 }, { name: 'mem', type: 'character-device', devmajor: 1, devminor: 1 }, file('ok')]);
    await storeEvil([layer]);
    const d = store.resolve('evil').layerDirs[0] as string;
    expect(fs.readdirSync(d)).toEqual(['ok']);
    await store.remove('evil');
    expectStoreIntact();
  });

  it('stops a decompression bomb at the configured limit', async () => {
    // 512 MiB of zeros in one file compresses to about 0.5 MiB.
    const size = 512 * 1024 * 1024;
    const header = await buildTar([{ name: 'bomb', type: 'file', data: Buffer.alloc(0) }]);
    const hdr = Buffer.from(header.subarray(0, 512));
    hdr.write(size.toString(8).padStart(11, '0'), 124, 'ascii');
    let sum = 0;
    hdr.fill(' ', 148, 156);
    for (const b of hdr) sum += b;
    hdr.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
    const gz = zlib.createGzip({ level: 1 });
    const chunks: Buffer[] = [];
    gz.on('data', (c: Buffer) => chunks.push(c));
    const ended = new Promise((r) => gz.on('end', r));
    gz.write(hdr);
    const zeros = Buffer.alloc(1 << 20);
    for (let i = 0; i < size / zeros.length; i++) gz.write(zeros);
    gz.end(Buffer.alloc(1024));
    await ended;
    const blob = Buffer.concat(chunks);
    expect(blob.length).toBeLessThan(4 << 20);
    const layer: BuiltLayer = { tar: Buffer.alloc(0), blob, digest: sha256(blob), diffId: sha256('unknown'), mediaType: MediaType.ociLayerGzip };
    const img = buildImage([layer], {});
    const t0 = process.memoryUsage().rss;
    await expect(commitWithLimits(img, blob, 'evil:bomb', { maxBytes: 32 << 20, maxEntries: 1000 })).rejects.toThrow(/larger than the limit of 33554432 bytes/);
    expect(process.memoryUsage().rss - t0).toBeLessThan(256 << 20);
    expectStoreIntact();
  });

  it('refuses a layer with more entries than the limit', async () => {
    const layer = await buildLayer(Array.from({ length: 50 }, (_, i) => file(`f${i}`)));
    const img = buildImage([layer], {});
    await expect(commitWithLimits(img, layer.blob, 'evil:many', { maxBytes: 1 << 30, maxEntries: 20 })).rejects.toThrow(/more than 20 entries/);
    expectStoreIntact();
  });

  it('refuses a truncated gzip stream', async () => {
    const good = await buildLayer([file('a', 'x'.repeat(100_000)), file('b', 'y'.repeat(100_000))]);
    const cut = good.blob.subarray(0, Math.floor(good.blob.length / 2));
    const layer: BuiltLayer = { ...good, blob: Buffer.from(cut), digest: sha256(cut) };
    await expect(storeEvil([layer])).rejects.toThrow(/gzip data is corrupt or truncated|Unexpected end/);
    expectStoreIntact();
  });

  it('refuses a truncated uncompressed layer, and one over the byte limit', async () => {
    const good = await buildLayer([file('a', 'x'.repeat(100_000)), file('b', 'y'.repeat(100_000))], 'none');
    const cut = Buffer.from(good.blob.subarray(0, 150_000));
    await expect(storeEvil([{ ...good, blob: cut, digest: sha256(cut), diffId: sha256(cut) }])).rejects.toThrow(/tar stream ends in the middle of entry "b"/);
    expectStoreIntact();
    const img = buildImage([good], {});
    await expect(commitWithLimits(img, good.blob, 'evil:big', { maxBytes: 64 << 10, maxEntries: 1000 })).rejects.toThrow(/larger than the limit of 65536 bytes/);
    expectStoreIntact();
  });

  it('refuses a layer whose content does not match the diff id in the config', async () => {
    const real = await buildLayer([file('a', 'real')]);
    const other = await buildLayer([file('a', 'other')]);
    await expect(storeEvil([{ ...real, diffId: other.diffId }])).rejects.toThrow(/uncompressed content has digest .* but the image config says/);
    expectStoreIntact();
  });

  it('refuses a blob whose content does not match its digest', async () => {
    const real = await buildLayer([file('a', 'real')]);
    const other = await buildLayer([file('a', 'other')]);
    await expect(storeEvil([{ ...real, digest: other.digest }])).rejects.toThrow(/does not match the expected/);
    expectStoreIntact();
  });
});
