import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpackLayer } from '../../src/image/unpack.js';
import { fsOps } from '../../src/image/fs-ops.js';
import { MAX_RESERVE } from '../../src/image/file-write-queue.js';
import { cleanup, describeTree, tempDir } from './helpers.js';
import { run } from './fixtures.js';

const CAP = 'security.capability';

/**
 * File capabilities and binary xattrs in a layer written by GNU tar: after our unpack they must be the bytes GNU
 * tar itself extracts. Each xattr-setting path of the unpacker is covered: a small file (written in a batch off
 * the main thread), a file too big for a batch (streamed), and a directory (metadata set by path).
 */
describe('file capabilities and binary xattrs survive the unpack', () => {
  let dir: string;
  let src: string;
  /** Name, capability as setcap takes it, and as getcap prints it. */
  const capped = [
    ['bin/ping', 'cap_net_raw+ep', 'cap_net_raw=ep'],
    // 0x80 in the permitted mask (bit 7): not UTF-8, which is what a text-decoding reader loses.
    ['bin/newuidmap', 'cap_setuid+ep', 'cap_setuid=ep'],
    ['bin/big', 'cap_net_raw,cap_setuid+ep', 'cap_setuid,cap_net_raw=ep'],
  ] as const;
  const binary = Buffer.from([0x80, 0xff, 0x00, 0xc3, 0x28, 0x3d, 0x0a, 0xfe]);

  beforeAll(() => {
    // Under /var/tmp (ext4, as the store): security.* xattrs are supported there.
    dir = tempDir('xattr-cap');
    src = path.join(dir, 'src');
    fs.mkdirSync(path.join(src, 'bin'), { recursive: true });
    fs.writeFileSync(path.join(src, 'bin/ping'), 'ping\n');
    fs.writeFileSync(path.join(src, 'bin/newuidmap'), 'newuidmap\n');
    fs.writeFileSync(path.join(src, 'bin/big'), Buffer.alloc(MAX_RESERVE + 1, 0x5a));
    fs.writeFileSync(path.join(src, 'plain'), 'no caps\n');
    for (const [name, cap] of capped) {
      try {
        run('setcap', [cap, path.join(src, name)]);
      } catch (err) {
        throw new Error(`setcap ${cap} failed (setcap is in Debian's libcap2-bin; the file system must take security.* xattrs): ${String(err)}`, { cause: err });
      }
    }
    fsOps().fsLsetxattr(path.join(src, 'bin'), 'user.binary', binary);
    fsOps().fsLsetxattr(path.join(src, 'plain'), 'user.binary', binary);
  });
  afterAll(() => cleanup(dir));

  const capOf = (root: string, name: string): string | undefined => fsOps().fsLgetxattr(path.join(root, name), CAP)?.toString('hex');

  it('the layer really carries non-UTF-8 capability bytes', () => {
    const raw = fsOps().fsLgetxattr(path.join(src, 'bin/newuidmap'), CAP);
    expect(raw?.includes(0x80)).toBe(true);
    expect(Buffer.from(raw?.toString('utf8') ?? '', 'utf8').equals(raw as Buffer)).toBe(false);
  });

  for (const compress of ['none', 'gzip'] as const) {
    for (const from of ['file', 'stream'] as const) {
      it(`pax layer, ${compress}, read from a ${from}: the same capability bytes as GNU tar extracts`, async () => {
        const layer = path.join(dir, `layer-${compress}-${from}.tar`);
        run('tar', ['-C', src, '--format=pax', '--xattrs', '--xattrs-include=*', ...(compress === 'gzip' ? ['--gzip'] : []), '-cf', layer, '.']);
        const theirs = path.join(dir, `theirs-${compress}-${from}`);
        const ours = path.join(dir, `ours-${compress}-${from}`);
        fs.mkdirSync(theirs);
        fs.mkdirSync(ours);
        run('tar', ['-C', theirs, '--xattrs', '--xattrs-include=*', '--same-owner', '-p', '-xf', layer]);
        // A file path is what the image store passes (layer-cache.ts); a stream is the other read path.
        await unpackLayer(from === 'file' ? layer : fs.createReadStream(layer), ours, { what: layer });

        for (const [name, , shown] of capped) {
          const want = capOf(src, name);
          expect(want, `${name} in the source`).toBeDefined();
          expect(capOf(theirs, name), `${name} extracted by GNU tar`).toBe(want);
          expect(capOf(ours, name), `${name} unpacked by vrun`).toBe(want);
          expect(run('getcap', [path.join(ours, name)]).trim()).toBe(`${path.join(ours, name)} ${shown}`);
        }
        expect(capOf(ours, 'plain')).toBeUndefined();
        // user.* binary values (a file and a directory), and everything else about the tree, as GNU tar has it.
        const ourTree = describeTree(ours);
        expect(ourTree['bin']?.xattrs).toEqual({ 'user.binary': binary.toString('hex') });
        expect(ourTree['plain']?.xattrs).toEqual({ 'user.binary': binary.toString('hex') });
        expect(ourTree).toEqual(describeTree(theirs));
      });
    }
  }
});
