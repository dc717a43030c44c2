import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileWriteQueue } from '../../src/image/file-write-queue.js';
import { fsOps, type NewFile } from '../../src/image/fs-ops.js';
import { cleanup, tempDir } from './helpers.js';

/** The native batch writer behind unpack's small files, and the queue that feeds it. */
describe('fsWriteNewFiles', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach(cleanup));
  const fresh = () => {
    const d = tempDir('newfiles');
    dirs.push(d);
    return d;
  };
  const file = (p: string, data: Buffer[], more: Partial<NewFile> = {}): NewFile => ({
    path: p,
    data,
    mode: 0o644,
    owner: null,
    mtimeSec: 1_700_000_000,
    mtimeNsec: 0,
    xattrs: [],
    ...more,
  });

  it('writes data from many chunks, then owner, mode, xattrs and an mtime with nanoseconds', async () => {
    const d = fresh();
    // More chunks than one writev takes (IOV_MAX is 1024), some empty.
    const chunks = Array.from({ length: 3000 }, (_, i) => (i % 7 === 0 ? Buffer.alloc(0) : Buffer.from(`${i},`)));
    await fsOps().fsWriteNewFiles([
      file(path.join(d, 'a'), chunks, {
        mode: 0o4751,
        owner: [1234, 5678],
        mtimeSec: 1_234_567_890,
        mtimeNsec: 123_456_789,
        xattrs: [['user.note', Buffer.from('kept')]],
      }),
      file(path.join(d, 'empty'), [], { mode: 0o600, mtimeSec: -1, mtimeNsec: 500_000_000 }),
    ]);
    expect(fs.readFileSync(path.join(d, 'a'))).toEqual(Buffer.concat(chunks));
    const st = fs.statSync(path.join(d, 'a'), { bigint: true });
    expect(Number(st.mode & 0o7777n)).toBe(0o4751); // mode after chown: the set-user-id bit survives
    expect([Number(st.uid), Number(st.gid)]).toEqual([1234, 5678]);
    expect(st.mtimeNs).toBe(1_234_567_890_123_456_789n);
    expect(fsOps().fsLgetxattr(path.join(d, 'a'), 'user.note')?.toString()).toBe('kept');
    const e = fs.statSync(path.join(d, 'empty'), { bigint: true });
    expect(e.size).toBe(0n);
    expect(Number(e.mode & 0o7777n)).toBe(0o600);
    expect(e.mtimeNs).toBe(-500_000_000n);
  });

  it('never writes through an existing name or a planted symlink, and stops the batch at the first failure', async () => {
    const d = fresh();
    const outside = path.join(fresh(), 'victim');
    fs.writeFileSync(outside, 'untouched');
    fs.symlinkSync(outside, path.join(d, 'link'));
    fs.writeFileSync(path.join(d, 'existing'), 'old');
    const err = await fsOps()
      .fsWriteNewFiles([file(path.join(d, 'first'), [Buffer.from('1')]), file(path.join(d, 'link'), [Buffer.from('evil')]), file(path.join(d, 'after'), [Buffer.from('2')])])
      .then(
        () => undefined,
        (e: unknown) => e as NodeJS.ErrnoException,
      );
    expect(err?.code).toBe('EEXIST');
    expect(err?.syscall).toBe('open');
    expect(err?.path).toBe(path.join(d, 'link'));
    expect(fs.readFileSync(outside, 'utf8')).toBe('untouched');
    expect(fs.readFileSync(path.join(d, 'first'), 'utf8')).toBe('1');
    expect(fs.existsSync(path.join(d, 'after'))).toBe(false);
    await expect(fsOps().fsWriteNewFiles([file(path.join(d, 'existing'), [Buffer.from('new')])])).rejects.toMatchObject({ code: 'EEXIST' });
    expect(fs.readFileSync(path.join(d, 'existing'), 'utf8')).toBe('old');
  });

  it('refuses malformed descriptions before touching the disk', () => {
    const d = fresh();
    const p = path.join(d, 'x');
    const bad: unknown[] = [
      [{ ...file(p, []), mode: 0o10000 }],
      [{ ...file(p, []), mode: -1 }],
      [{ ...file(p, []), owner: [1] }],
      [{ ...file(p, []), mtimeNsec: 1e9 }],
      [{ ...file(p, []), data: ['not a buffer'] }],
      [{ ...file(p, []), path: `${p}\0y` }],
      [{ ...file(p, []), xattrs: [['user.x']] }],
      'nope',
    ];
    for (const files of bad) {
      expect(() => fsOps().fsWriteNewFiles(files as NewFile[]), JSON.stringify(files)).toThrow(/fsWriteNewFiles/);
    }
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it('queue: reserved batch buffers are reused only after their batch is written', async () => {
    const d = fresh();
    const q = new FileWriteQueue();
    const meta = { mode: 0o644, owner: null, mtimeSec: 0, mtimeNsec: 0, xattrs: [] };
    // 200 files of 300 KiB: about 60 MiB through buffers of a few MiB, so each is reused many times over.
    const sizes = Array.from({ length: 200 }, (_, i) => 300_000 + i);
    for (const [i, size] of sizes.entries()) {
      const slice = await q.reserve(size);
      slice.fill(i & 0xff);
      await q.add(path.join(d, `f${i}`), [slice], meta, `entry f${i}`);
    }
    await q.settle();
    for (const [i, size] of sizes.entries()) {
      const got = fs.readFileSync(path.join(d, `f${i}`));
      expect(got.length).toBe(size);
      expect(got.every((b) => b === (i & 0xff)), `f${i}`).toBe(true);
    }
    await expect(q.reserve(64 << 20)).rejects.toThrow(RangeError);
  });

  it('queue: batches in order, settles, and names the entry of the first failure', async () => {
    const d = fresh();
    const q = new FileWriteQueue();
    const meta = { mode: 0o640, owner: null, mtimeSec: 0, mtimeNsec: 0, xattrs: [] };
    for (let i = 0; i < 300; i++) await q.add(path.join(d, `f${i}`), [Buffer.from(String(i))], meta, `entry f${i}`);
    await q.settle();
    expect(fs.readdirSync(d).length).toBe(300);
    expect(fs.readFileSync(path.join(d, 'f299'), 'utf8')).toBe('299');
    await q.add(path.join(d, 'f7'), [Buffer.from('again')], meta, 'layer: entry "f7"');
    await expect(q.settle()).rejects.toThrow(/^layer: entry "f7": EEXIST/);
    expect(fs.readFileSync(path.join(d, 'f7'), 'utf8')).toBe('7');
  });
});
