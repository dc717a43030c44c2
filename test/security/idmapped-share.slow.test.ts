import { chmodSync, chownSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRunDir, vrun as vrunIn } from '../cli/fake-sandbox.js';
import { childrenOf, statusField } from '../vmm/helpers/proc-status.js';
import { ensureGuestImage } from '../../src/guest-image/image.js';
import { storeLayout } from '../../src/image/store-layout.js';
import { USERNS_RANGE_BASE } from '../../src/vmm/jail/ids.js';

/**
 * virtiofsd runs as a non-root host uid in a user namespace, and the share is mounted id-mapped: the guest
 * must still see the image's and the volume's real owners, and what it makes must be owned on the host by
 * the uid it made it as (not by virtiofsd's host uid). Through the real CLI, QEMU (TCG), virtiofsd and crun.
 */
const runDir = mkdtempSync('/run/vrun-test-idmap-');
const vrun = (args: string[]) => vrunIn(runDir, args);

/** `stat -c '%u:%g %n'` lines as name -> "uid:gid". */
function owners(out: string): Record<string, string> {
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((l) => l.trim().split(' '))
      .map(([ids, name]) => [name ?? '', ids ?? '']),
  );
}

function hostOwner(p: string): string {
  const st = lstatSync(p);
  return `${st.uid}:${st.gid}`;
}

describe('an id-mapped share served by an unprivileged virtiofsd (QEMU TCG)', () => {
  let vol: string;

  beforeAll(async () => {
    await ensureGuestImage();
    vol = mkdtempSync(path.join(os.tmpdir(), 'vrun-idmap-vol-'));
    chmodSync(vol, 0o1777);
    writeFileSync(path.join(vol, 'root-file'), 'r\n');
    writeFileSync(path.join(vol, 'user-file'), 'u\n');
    chownSync(path.join(vol, 'user-file'), 1000, 1001);
  });

  afterAll(() => {
    removeRunDir(runDir);
    if (vol) rmSync(vol, { recursive: true, force: true });
  });

  it('shows the real owners in the guest and keeps the guest\'s uids on the host, in the rootfs and in a volume', async () => {
    const started = await vrun(['run', '-d', '-v', `${vol}:/vol`, 'busybox', 'sleep', '600']);
    expect(started.status, started.stderr).toBe(0);
    const id = started.stdout.trim();
    try {
      const inspected = await vrun(['inspect', id]);
      expect(inspected.status, inspected.stderr).toBe(0);
      const info = (JSON.parse(inspected.stdout) as { Sandbox: { Pids: { virtiofsd?: number[] } } }[])[0];
      // One virtiofsd for the rootfs share, one for the volume: each a jailer whose program runs as the
      // pod's (or its own) first id of a range, never as root.
      const jailers = info?.Sandbox.Pids.virtiofsd ?? [];
      expect(jailers).toHaveLength(2);
      for (const jailer of jailers) {
        const [fsd] = childrenOf(jailer);
        expect(programOf(fsd)).toBe('/usr/lib/qemu/virtiofsd');
        const uid = Number(statusField(fsd ?? 0, 'Uid').split(/\s+/)[0]);
        expect(uid).toBeGreaterThanOrEqual(USERNS_RANGE_BASE);
      }

      const script = [
        "stat -c '%u:%g %n' /bin/busybox /etc/passwd /vol/root-file /vol/user-file",
        'echo made > /made-by-root',
        'touch -c /etc/group',
        'touch /vol/by-root /vol/by-chown',
        'chown 1000:1000 /vol/by-chown',
        'mkdir -m 1777 /scratch',
        "su -s /bin/sh nobody -c 'touch /vol/by-nobody /scratch/by-nobody'",
        "stat -c '%u:%g %n' /made-by-root /etc/group /vol/by-root /vol/by-chown /vol/by-nobody /scratch/by-nobody",
      ].join(' && ');
      const e = await vrun(['exec', id, 'sh', '-c', script]);
      expect(e.status, e.stderr).toBe(0);
      const seen = owners(e.stdout);
      // The image's root-owned files, and the volume's files, with their real owners in the guest.
      expect(seen['/bin/busybox']).toBe('0:0');
      expect(seen['/vol/root-file']).toBe('0:0');
      expect(seen['/vol/user-file']).toBe('1000:1001');
      // What the guest made, as root, by chown, and as nobody (65534), as the guest sees it...
      expect(seen['/made-by-root']).toBe('0:0');
      expect(seen['/etc/group']).toBe('0:0');
      expect(seen['/vol/by-root']).toBe('0:0');
      expect(seen['/vol/by-chown']).toBe('1000:1000');
      expect(seen['/vol/by-nobody']).toBe('65534:65534');
      expect(seen['/scratch/by-nobody']).toBe('65534:65534');
      // ...and on the host's disk: the volume's directory, and the rootfs's upper layer in the image store.
      expect(hostOwner(path.join(vol, 'by-root'))).toBe('0:0');
      expect(hostOwner(path.join(vol, 'by-chown'))).toBe('1000:1000');
      expect(hostOwner(path.join(vol, 'by-nobody'))).toBe('65534:65534');
      const upper = path.join(storeLayout().containers, id, 'upper');
      expect(hostOwner(path.join(upper, 'made-by-root'))).toBe('0:0');
      // A copy-up, made by overlayfs as its creator through the id-mapped upper layer.
      expect(hostOwner(path.join(upper, 'etc', 'group'))).toBe('0:0');
      expect(readFileSync(path.join(upper, 'etc', 'group'), 'utf8')).toMatch(/^root:x:0:/);
      expect(hostOwner(path.join(upper, 'scratch', 'by-nobody'))).toBe('65534:65534');
    } finally {
      const rm = await vrun(['rm', '-f', id]);
      expect(rm.status, rm.stderr).toBe(0);
    }
  });
});

function programOf(pid: number | undefined): string {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '';
}
