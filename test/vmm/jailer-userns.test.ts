import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jailerArgs, type JailSpec } from '../../src/vmm/jail/argv.js';
import { jailerBinary } from '../../src/vmm/jail/binary.js';
import { createIdMap, idmapRefusal, type IdMap } from '../../src/vmm/jail/idmap.js';
import { USERNS_RANGE_BASE, USERNS_RANGE_SIZE } from '../../src/vmm/jail/ids.js';
import { loadNative } from '../../src/common/native.js';

/**
 * vrun-jailer's user-namespace mode (how virtiofsd runs): the program is uid 0 of a namespace whose ids are a
 * non-root host range, sees an id-mapped directory with its real owners, and gets a listening socket the
 * jailer made. Checked on sh, from inside and from the host.
 */
let work: string;
let map: IdMap;
const NS_FD = 4;

function root(): string {
  const r = fs.mkdtempSync(path.join(work, 'root-'));
  fs.chmodSync(r, 0o700);
  return r;
}

function spec(extra: Partial<JailSpec>): JailSpec {
  return {
    usernsFd: NS_FD,
    root: root(),
    roBinds: ['/usr', '/etc/ld.so.cache'],
    symlinks: [
      { target: 'usr/bin', link: '/bin' },
      { target: 'usr/lib', link: '/lib' },
      { target: 'usr/lib64', link: '/lib64' },
    ],
    proc: true,
    ...extra,
  };
}

/** Runs `script` jailed with the namespace on fd NS_FD (or `nsFd`, an fd of this process). */
function jailed(s: JailSpec, script: string, nsFd = map.usernsFd): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(jailerBinary(), jailerArgs(s, '/bin/sh', ['-c', script]), { stdio: ['ignore', 'pipe', 'pipe', 'ignore', nsFd], encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-jailer-userns-'));
  map = createIdMap();
});

afterAll(() => {
  map?.release();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('vrun-jailer --userns-fd', () => {
  it('runs the program as uid 0 of the namespace, a non-root host uid, with capabilities only there', () => {
    const r = jailed(spec({}), 'cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; grep -E "^(NoNewPrivs|CapEff):" /proc/self/status');
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/));
    expect(map.base).toBeGreaterThanOrEqual(USERNS_RANGE_BASE);
    expect(lines[0]?.map(Number)).toEqual([0, map.base, USERNS_RANGE_SIZE]);
    expect(lines[1]?.map(Number)).toEqual([0, map.base, USERNS_RANGE_SIZE]);
    expect(lines[2]).toEqual(['0']);
    expect(lines[3]).toEqual(['0']);
    // Every capability, of that namespace: over files and processes it has no id for, none of them applies.
    expect(lines[4]).toEqual(['CapEff:', expect.stringMatching(/^0*1f+$/)]);
    expect(lines[5]).toEqual(['NoNewPrivs:', '1']);
  });

  it('refuses a namespace that maps its root to host root', async () => {
    // unshare -r: a user namespace whose uid 0 is host uid 0.
    const holder = spawn('unshare', ['--user', '--map-root-user', 'sleep', '30'], { stdio: 'ignore' });
    try {
      const nsPath = `/proc/${holder.pid}/ns/user`;
      const deadline = Date.now() + 5000;
      while (fs.readlinkSync(nsPath) === fs.readlinkSync('/proc/self/ns/user')) {
        if (Date.now() > deadline) throw new Error('unshare did not make its namespace');
        await new Promise((r) => setTimeout(r, 10));
      }
      const rootMapped = fs.openSync(nsPath, 'r');
      try {
        const r = jailed(spec({}), 'echo ran', rootMapped);
        expect(r.status).toBe(125);
        expect(r.stdout).toBe('');
        expect(r.stderr).toMatch(/vrun-jailer: --userns-fd: \/proc\/self\/uid_map maps 0 to host id 0/);
      } finally {
        fs.closeSync(rootMapped);
      }
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('refuses an fd that is not a user namespace, and --uid with it, and --idmap-bind without it', () => {
    const netns = fs.openSync('/proc/self/ns/net', 'r');
    try {
      expect(jailed(spec({}), 'echo ran', netns).stderr).toMatch(/is not a user namespace/);
    } finally {
      fs.closeSync(netns);
    }
    const both = spawnSync(jailerBinary(), ['--userns-fd', String(NS_FD), '--uid', '5', '--gid', '5', '--root', root(), '--', '/bin/true'], { stdio: ['ignore', 'pipe', 'pipe', 'ignore', map.usernsFd], encoding: 'utf8' });
    expect(both.stderr).toMatch(/--uid\/--gid: not with --userns-fd/);
    const noNs = spawnSync(jailerBinary(), ['--uid', '5', '--gid', '5', '--root', root(), '--idmap-bind', work, '--', '/bin/true'], { encoding: 'utf8' });
    expect(noNs.stderr).toMatch(/--idmap-bind: needs --userns-fd/);
  });

  it('shows an id-mapped directory with its real owners, and what the program makes there is owned by the uid it made it as', () => {
    const dir = fs.mkdtempSync(path.join(work, 'share-'));
    fs.chmodSync(dir, 0o755);
    fs.writeFileSync(path.join(dir, 'root-file'), 'x');
    fs.writeFileSync(path.join(dir, 'user-file'), 'x');
    fs.chownSync(path.join(dir, 'user-file'), 1000, 1000);
    const bound = jailed(spec({ idmapBinds: [dir] }), `cd ${dir} && stat -c '%u %n' root-file user-file && touch made && chown 1000:1000 made && touch mine-too`);
    expect(bound.status, bound.stderr).toBe(0);
    expect(bound.stdout).toBe('0 root-file\n1000 user-file\n');
    expect(fs.statSync(path.join(dir, 'made')).uid).toBe(1000);
    expect(fs.statSync(path.join(dir, 'mine-too')).uid).toBe(0);
    // The same directory bound without the mapping: host root's files are nobody's, and read-only to it.
    const plain = jailed(spec({ rwBinds: [dir] }), `cd ${dir} && stat -c '%u' root-file; touch new 2>&1 || true`);
    expect(plain.stdout.split('\n')[0]).toBe('65534');
    expect(plain.stdout).toMatch(/Permission denied|Value too large/);
    expect(fs.existsSync(path.join(dir, 'new'))).toBe(false);
  });

  it('hands the program a socket it created, 0600, listening at the path', () => {
    const sock = path.join(work, 'l.sock');
    const r = jailed(spec({ listens: [{ fd: 3, path: sock }] }), 'ls -l /proc/self/fd/3');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/3 -> socket:\[\d+\]/);
    expect(fs.statSync(sock).isSocket()).toBe(true);
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    // An existing path is never replaced.
    const again = jailed(spec({ listens: [{ fd: 3, path: sock }] }), 'echo ran');
    expect(again.stderr).toMatch(/the path exists already/);
  });

  it('publishes the socket only once the jail is built: a jail that fails leaves no path behind', () => {
    const sock = path.join(work, 'never.sock');
    // sysfs cannot be id-mapped: the jail fails after the socket was bound under its temporary name.
    const r = jailed(spec({ listens: [{ fd: 3, path: sock }], idmapBinds: ['/sys'] }), 'echo ran');
    expect(r.status).toBe(125);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/--idmap-bind \/sys: id-mapping it/);
    expect(fs.existsSync(sock)).toBe(false);
    expect(fs.readdirSync(work).filter((n) => n.startsWith('never.sock'))).toEqual([]);
  });
});

describe('idmapRefusal', () => {
  it('names the kernel and its error for a mount that cannot be id-mapped, and nothing for one that can', () => {
    expect(idmapRefusal(map, '/proc')).toMatch(new RegExp(`^Linux ${os.release().replace(/[.+]/g, '\\$&')} cannot id-map /proc: .*Invalid argument`));
    const before = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    // The work directory's filesystem (ext4 or tmpfs here) can; the check mounts nothing.
    expect(idmapRefusal(map, work)).toBeUndefined();
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).toBe(before);
  });
});

describe('idmapUserns (native)', () => {
  it('refuses a range that would include host id 0', () => {
    const n = loadNative<{ idmapUserns(base: number, count: number): number }>();
    expect(() => n.idmapUserns(0, 10)).toThrow(/must not include host id 0/);
  });
});
