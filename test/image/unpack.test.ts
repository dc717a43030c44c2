import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpackLayer } from '../../src/image/unpack.js';
import { sha256 } from '../../src/image/digest.js';
import { buildBusyboxImage } from '../../src/image/builtin.js';
import { ImageStore } from '../../src/image/image-store.js';
import { storeBuiltImage } from '../../src/image/builtin.js';
import { fsOps } from '../../src/image/fs-ops.js';
import { MAX_RESERVE } from '../../src/image/file-write-queue.js';
import { ReadBuffers } from '../../src/image/read-buffers.js';
import { prng } from '../prng.js';
import { cleanup, describeTree, tempDir } from './helpers.js';
import { run, umociRootfs } from './fixtures.js';

/** Layers written by GNU tar in each of its formats, unpacked by us and by GNU tar itself: the trees must agree. */
describe('unpack of layers written by GNU tar', () => {
  let dir: string;
  let src: string;
  beforeAll(() => {
    dir = tempDir('unpack');
    src = path.join(dir, 'src');
    const deep = path.join(src, 'a'.repeat(90), 'b'.repeat(90), 'c'.repeat(90));
    fs.mkdirSync(deep, { recursive: true });
    fs.writeFileSync(path.join(deep, `${'long-name-'.repeat(12)}.txt`), 'long paths need pax or GNU long names\n');
    fs.symlinkSync(`../${'x'.repeat(150)}/target`, path.join(src, 'long-link'));
    fs.writeFileSync(path.join(src, 'caps'), 'x');
    fsOps().fsLsetxattr(path.join(src, 'caps'), 'user.note', Buffer.from('kept'));
    fs.writeFileSync(path.join(src, 'big'), Buffer.alloc(3 << 20, 0x5a));
    fs.linkSync(path.join(src, 'big'), path.join(src, 'big-link'));
    fs.chownSync(path.join(src, 'big'), 3000000, 4000000); // beyond ustar's octal uid field: pax/GNU base-256
    fs.mkdirSync(path.join(src, 'sticky'), { mode: 0o1777 });
    fs.chmodSync(path.join(src, 'sticky'), 0o1777);
    fs.writeFileSync(path.join(src, 'sgid'), '');
    fs.chmodSync(path.join(src, 'sgid'), 0o2711);
    fsOps().fsMknod(path.join(src, 'pipe'), fs.constants.S_IFIFO | 0o640, 0, 0);
  });
  afterAll(() => cleanup(dir));

  for (const format of ['pax', 'gnu', 'posix'] as const) {
    for (const compress of ['none', 'gzip', 'zstd'] as const) {
      it(`${format} format, ${compress}`, async () => {
        const tarFile = path.join(dir, `${format}-${compress}.tar`);
        const flags = { none: [], gzip: ['--gzip'], zstd: ['--zstd'] }[compress];
        run('tar', ['-C', src, `--format=${format}`, '--xattrs', '--xattrs-include=user.*', ...flags, '-cf', tarFile, '.']);
        const theirs = path.join(dir, `theirs-${format}-${compress}`);
        fs.mkdirSync(theirs);
        run('tar', ['-C', theirs, '--xattrs', '--xattrs-include=user.*', '--same-owner', '-p', '-xf', tarFile]);
        // From the file (what the store does) and from a stream: two read paths, one result.
        for (const from of ['file', 'stream'] as const) {
          const ours = path.join(dir, `ours-${format}-${compress}-${from}`);
          fs.mkdirSync(ours);
          const res = await unpackLayer(from === 'file' ? tarFile : fs.createReadStream(tarFile), ours, { what: tarFile });
          expect(res.compression).toBe(compress);
          expect(res.compressedDigest).toBe(sha256(fs.readFileSync(tarFile)));
          const ourTree = describeTree(ours);
          expect(ourTree).toEqual(describeTree(theirs));
          expect(ourTree['caps']?.xattrs).toEqual({ 'user.note': Buffer.from('kept').toString('hex') });
          expect(ourTree['big-link']?.group).toBe('big');
          expect(ourTree['big']?.uid).toBe(3000000);
        }
      });
    }
  }

  it('does not hash a store blob again, but still hashes a compressed layer to get its diff id', async () => {
    const plain = path.join(dir, 'stored.tar');
    run('tar', ['-C', src, '-cf', plain, '.']);
    const gz = path.join(dir, 'stored.tar.gz');
    run('sh', ['-c', `gzip -c ${plain} > ${gz}`]);
    const diffId = sha256(fs.readFileSync(plain));
    const theirs = path.join(dir, 'theirs-stored');
    fs.mkdirSync(theirs);
    run('tar', ['-C', theirs, '--xattrs', '--xattrs-include=user.*', '--same-owner', '-p', '-xf', plain]);
    // A digest the bytes do not have: what comes back shows which digests were taken on trust.
    const vouched = sha256(Buffer.from('the store hashed this blob when it stored it'));
    for (const [file, compression] of [[plain, 'none'], [gz, 'gzip']] as const) {
      const ours = path.join(dir, `stored-${compression}`);
      fs.mkdirSync(ours);
      const res = await unpackLayer(file, ours, { what: file, storedAs: vouched });
      expect(res.compression).toBe(compression);
      expect(res.compressedDigest).toBe(vouched);
      expect(res.diffId).toBe(compression === 'none' ? vouched : diffId);
      expect(describeTree(ours)).toEqual(describeTree(theirs));
    }
  });

  it('matches umoci unpack for the built-in image (whiteout and opaque directory applied)', async () => {
    const img = await buildBusyboxImage();
    const layout = path.join(dir, 'bb-layout');
    const blobs = path.join(layout, 'blobs', 'sha256');
    fs.mkdirSync(blobs, { recursive: true });
    for (const b of [img.config, img.manifest, ...img.layers.map((l) => l.blob)]) fs.writeFileSync(path.join(blobs, sha256(b).slice(7)), b);
    fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    fs.writeFileSync(
      path.join(layout, 'index.json'),
      JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: img.manifestDigest, size: img.manifest.length, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] }),
    );
    const reference = describeTree(umociRootfs(layout, 'latest', path.join(dir, 'bb-umoci')));
    const store = new ImageStore(path.join(dir, 'bb-store'));
    await storeBuiltImage(store, img, ['busybox:latest']);
    for (const mode of ['overlay', 'copy'] as const) {
      const target = path.join(dir, `bb-${mode}`);
      await store.prepareRootfs(`bb-${mode}`, 'busybox', target, { mode });
      const ours = describeTree(target);
      expect(ours).toEqual(reference);
      expect(ours['etc/build-only']).toBeUndefined();
      expect(Object.keys(ours).filter((k) => k.startsWith('var/spool/setup/'))).toEqual(['var/spool/setup/ready']);
      await store.releaseRootfs(`bb-${mode}`);
    }
  });
});

/**
 * An uncompressed layer file's small files are queued as views into the read buffers, which are read into again
 * once their files are written: a buffer reused too early would give files another part of the layer.
 */
describe('unpack from reused read buffers', () => {
  let dir: string;
  afterAll(() => cleanup(dir));

  it('ReadBuffers reads into a buffer again only when every hold on it is released', () => {
    const pool = new ReadBuffers(64);
    const a = pool.acquire();
    const release = pool.hold(a.subarray(10, 20));
    pool.release(a); // the reader is done; a queued file still holds part of it
    const b = pool.acquire();
    expect(b.buffer).not.toBe(a.buffer);
    release();
    release(); // a second call changes nothing
    pool.release(b);
    // Both are idle now: the next two reads reuse them, nothing new is made.
    const again = [pool.acquire().buffer, pool.acquire().buffer];
    expect(new Set(again)).toEqual(new Set([a.buffer, b.buffer]));
    expect(pool.allocated).toBe(2);
    expect(() => pool.hold(Buffer.alloc(8))).toThrow(/not in one of this pool's buffers/);
  });

  it('writes every file intact when a layer is many times larger than the buffers in flight', async () => {
    dir = tempDir('unpack-views');
    const src = path.join(dir, 'src');
    const rand = prng(20261124);
    // Sizes around the 1 MiB read size and the queue's 2 MiB limit, and many small files: most files span a
    // buffer boundary somewhere, and about 40 MB pass through the buffers.
    const sizes = [0, 1, 511, 512, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, MAX_RESERVE, MAX_RESERVE + 1];
    for (let i = 0; i < 500; i++) sizes.push(Math.floor(rand() * rand() * 300_000));
    sizes.forEach((size, i) => {
      const d = path.join(src, `d${i % 7}`);
      fs.mkdirSync(d, { recursive: true });
      // Random content: a file given the wrong part of the layer cannot match by chance.
      fs.writeFileSync(path.join(d, `f${i}`), crypto.randomBytes(size));
    });
    const tarFile = path.join(dir, 'layer.tar');
    run('tar', ['-C', src, '-cf', tarFile, '.']);
    const ours = path.join(dir, 'ours');
    fs.mkdirSync(ours);
    const res = await unpackLayer(tarFile, ours, { what: 'views layer' });
    expect(res.diffId).toBe(sha256(fs.readFileSync(tarFile)));
    expect(describeTree(ours)).toEqual(describeTree(src));
  });
});
