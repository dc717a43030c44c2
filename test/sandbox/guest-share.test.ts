import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mountsUnder } from '../../src/sandbox/cleanup.js';
import { GuestShare, removeHostTree } from '../../src/sandbox/guest-share.js';

/**
 * The pod share's guarantees, on real mounts: the guest's view (what virtiofsd serves) is read-only around
 * the host's mounts and writable inside them; binds get their flags before the guest can see them; removal
 * never follows a symlink or leaves the share's own filesystem.
 */
function mountOptions(p: string): string[] {
  const line = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === p);
  if (!line) throw new Error(`${p} is not a mount point`);
  return (line.split(' ')[5] ?? '').split(',');
}

/**
 * What the guest does through virtiofsd, done as virtiofsd does it: as the pod's host uid (uid 0 in the
 * share's id mapping). Host root itself has no id in the mapped mounts (EOVERFLOW); DAC_OVERRIDE stands in
 * for the jail that gives virtiofsd a path to the tree.
 */
function asGuest(share: GuestShare, script: string, ...args: string[]): void {
  const id = String(share.idmap?.base);
  execFileSync('setpriv', [`--reuid=${id}`, `--regid=${id}`, '--clear-groups', '--inh-caps=+dac_override', '--ambient-caps=+dac_override', 'sh', '-c', script, 'sh', ...args]);
}

function errnoOf(fn: () => void): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
}

describe('GuestShare', () => {
  let base: string;
  let share: GuestShare;
  let outside: string;

  beforeEach(async () => {
    base = mkdtempSync(path.join(tmpdir(), 'vrun-share-'));
    outside = path.join(base, 'outside');
    mkdirSync(outside);
    writeFileSync(path.join(outside, 'canary'), 'do not touch\n');
    share = await GuestShare.create(path.join(base, 'pod'));
  });

  afterEach(async () => {
    await share.destroy();
    expect(await mountsUnder(base)).toEqual([]);
    rmSync(base, { recursive: true, force: true });
  });

  it('serves a read-only tree: the guest can plant nothing where the host mounts', async () => {
    await share.mkdir('c1/mounts');
    const served = share.servedPath('c1/mounts');
    expect(existsSync(served)).toBe(true);
    // What a guest does through virtiofsd: symlink, create, rename, delete in the tree itself.
    expect(errnoOf(() => symlinkSync(outside, path.join(served, '0')))).toBe('EROFS');
    expect(errnoOf(() => writeFileSync(path.join(served, 'x'), 'x'))).toBe('EROFS');
    expect(errnoOf(() => mkdirSync(path.join(share.servedDir, 'c2')))).toBe('EROFS');
    expect(errnoOf(() => rmSync(served, { recursive: true }))).toBe('EROFS');
    expect(mountOptions(share.servedDir)).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev', 'noexec']));
  });

  it('a bind reaches the guest view writable, with nosuid,nodev,noexec, and read-only when asked', async () => {
    const src = path.join(base, 'vol');
    mkdirSync(src);
    await share.bind(src, 'c1/mounts/0', { readonly: false });
    await share.bind(src, 'c1/mounts/1', { readonly: true });
    asGuest(share, 'printf hi > "$1"', path.join(share.servedPath('c1/mounts/0'), 'from-guest'));
    expect(readFileSync(path.join(src, 'from-guest'), 'utf8')).toBe('hi');
    expect(errnoOf(() => writeFileSync(path.join(share.servedPath('c1/mounts/1'), 'nope'), 'x'))).toBe('EROFS');
    for (const rel of ['c1/mounts/0', 'c1/mounts/1']) {
      // The guest's copy, not only the host's: a remount after the fact would not have reached it.
      const opts = mountOptions(share.servedPath(rel));
      expect(opts).toEqual(expect.arrayContaining(['nosuid', 'nodev', 'noexec']));
      expect(opts).toContain(rel.endsWith('1') ? 'ro' : 'rw');
    }
    // A file bind (like a pod's hostname or resolv.conf).
    const file = path.join(base, 'hostname');
    writeFileSync(file, 'pod\n');
    await share.bind(file, 'c1/mounts/2', { readonly: true });
    expect(readFileSync(share.servedPath('c1/mounts/2'), 'utf8')).toBe('pod\n');
  });

  it('a filesystem mount arrives in the guest view with the guest-data flags', async () => {
    await share.mountFs('c1/rootfs', 'tmpfs', 'vrun-test', ['size=1m'], 'a test rootfs');
    asGuest(share, 'printf x > "$1"', path.join(share.servedPath('c1/rootfs'), 'f'));
    expect(lstatSync(path.join(share.hostPath('c1/rootfs'), 'f')).uid).toBe(share.idmap?.base);
    expect(mountOptions(share.servedPath('c1/rootfs'))).toEqual(expect.arrayContaining(['rw', 'nosuid', 'nodev', 'noexec']));
  });

  it('removal unmounts first and never touches what a mount held', async () => {
    const src = path.join(base, 'vol');
    mkdirSync(src);
    writeFileSync(path.join(src, 'keep'), 'data');
    await share.bind(src, 'c1/mounts/0', { readonly: false });
    await share.mountFs('c1/rootfs', 'tmpfs', 'vrun-test', ['size=1m'], 'a test rootfs');
    asGuest(share, 'ln -s "$1" "$2"', outside, path.join(share.servedPath('c1/rootfs'), 'evil'));
    await share.remove('c1');
    expect(existsSync(share.hostPath('c1'))).toBe(false);
    expect(readFileSync(path.join(src, 'keep'), 'utf8')).toBe('data');
    expect(readFileSync(path.join(outside, 'canary'), 'utf8')).toBe('do not touch\n');
    expect(await mountsUnder(share.podDir)).toEqual([share.servedDir, share.podDir + '/share-stage', share.podDir + '/share-host'].sort((a, b) => b.length - a.length));
  });

  it('removeHostTree refuses a tree that is not only mount points, and never follows a symlink', async () => {
    const t = path.join(base, 'tree');
    mkdirSync(path.join(t, 'a'), { recursive: true });
    symlinkSync(outside, path.join(t, 'a', 'link'));
    await expect(removeHostTree(t, lstatSync(t).dev)).rejects.toThrow(/holds only directories and mount points/);
    expect(readFileSync(path.join(outside, 'canary'), 'utf8')).toBe('do not touch\n');
    writeFileSync(path.join(t, 'data'), 'x');
    await expect(removeHostTree(path.join(t, 'data'), lstatSync(t).dev)).rejects.toThrow(/not one/);
    execFileSync('mount', ['-t', 'tmpfs', 'x', path.join(t, 'a')]);
    try {
      await expect(removeHostTree(t, lstatSync(t).dev)).rejects.toThrow(/another filesystem/);
    } finally {
      execFileSync('umount', [path.join(t, 'a')]);
    }
  });

  it('refuses paths that are not plain names', () => {
    for (const bad of ['../x', 'a/../../b', '/abs', 'a//b', '.', 'a/.']) expect(() => share.hostPath(bad)).toThrow(/invalid path/);
  });
});
