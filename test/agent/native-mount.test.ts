import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

/**
 * fsMount (native/src/fs_ops.cc), which the guest agent mounts virtio-fs shares with, on real mounts: the
 * script runs in a private mount namespace (unshare -m), so nothing it mounts is seen outside or outlives it.
 * It prints one JSON line of observations.
 */
const script = (dir: string) => `
import fs from 'node:fs';
import { loadNative } from ${JSON.stringify(path.join(root, 'dist/src/common/native.js'))};
const { fsMount } = loadNative();
const dir = ${JSON.stringify(dir)};
const out = {};
const caught = async (p) => p.then(() => 'resolved', (e) => ({ name: e.name, code: e.code, syscall: e.syscall, path: e.path, message: e.message }));
const thrown = (f) => { try { f(); return 'no throw'; } catch (e) { return { name: e.name, message: e.message }; } };
await fsMount(dir + '/src', dir + '/rw', '', ['bind'], '');
out.boundRead = fs.readFileSync(dir + '/rw/marker', 'utf8');
fs.writeFileSync(dir + '/rw/written', 'through the bind mount');
out.writtenSeenInSource = fs.readFileSync(dir + '/src/written', 'utf8');
await fsMount(dir + '/src', dir + '/ro', '', ['bind'], '');
await fsMount('', dir + '/ro', '', ['remount', 'bind', 'rdonly'], '');
out.roWrite = thrown(() => fs.writeFileSync(dir + '/ro/x', 'x'));
out.missingTarget = await caught(fsMount(dir + '/src', dir + '/no-such-dir', '', ['bind'], ''));
out.unknownTag = await caught(fsMount('no-such-tag', dir + '/rw', 'virtiofs', [], ''));
out.unknownFlag = thrown(() => fsMount(dir + '/src', dir + '/rw', '', ['bind', 'lazytime'], ''));
out.badArgs = thrown(() => fsMount(dir + '/src', dir + '/rw', '', 'bind', ''));
console.log(JSON.stringify(out));
`;

describe('native fsMount', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-mount-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('bind-mounts, remounts read-only, and fails like node:fs, naming the target', () => {
    for (const d of ['src', 'rw', 'ro']) fs.mkdirSync(path.join(dir, d));
    fs.writeFileSync(path.join(dir, 'src', 'marker'), 'from the source');
    const file = path.join(dir, 'mount.mjs');
    fs.writeFileSync(file, script(dir));
    const res = spawnSync('unshare', ['-m', '--propagation', 'private', process.execPath, file], { encoding: 'utf8' });
    expect(res.stderr).toBe('');
    const seen = JSON.parse(res.stdout.trim()) as Record<string, unknown>;
    expect(seen.boundRead).toBe('from the source');
    expect(seen.writtenSeenInSource).toBe('through the bind mount');
    expect(seen.roWrite).toEqual({ name: 'Error', message: expect.stringMatching(/^EROFS: read-only file system/) });
    expect(seen.missingTarget).toEqual({
      name: 'Error',
      code: 'ENOENT',
      syscall: 'mount',
      path: path.join(dir, 'no-such-dir'),
      message: `ENOENT: No such file or directory, mount '${path.join(dir, 'no-such-dir')}'`,
    });
    // This host has no such virtio-fs tag (or no virtio-fs at all): refused by the kernel, not hung.
    expect(seen.unknownTag).toMatchObject({ syscall: 'mount', code: expect.stringMatching(/^E[A-Z]+$/) });
    expect(seen.unknownFlag).toEqual({ name: 'TypeError', message: 'fsMount: unknown mount flag "lazytime"' });
    expect(seen.badArgs).toEqual({ name: 'TypeError', message: 'fsMount(source: string, target: string, fstype: string, flags: string[], data: string)' });
    // Nothing stayed mounted out here.
    expect(fs.readdirSync(path.join(dir, 'rw'))).toEqual([]);
  });
});
