import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive } from '../../src/sandbox/cleanup.js';
import { statusField } from './helpers/proc-status.js';
import { jailerArgs, type JailSpec } from '../../src/vmm/jail/argv.js';
import { jailerBinary } from '../../src/vmm/jail/binary.js';
import { createPodCgroups, type PodCgroups } from '../../src/vmm/jail/cgroups.js';
import { JAIL_ID_BASE, isJailIdReserved, reclaimStaleJailIds, releaseJailId, reserveJailId, type JailId } from '../../src/vmm/jail/ids.js';

/**
 * The jailer itself, on harmless programs (sh, sleep): every property is checked from outside (the host's
 * /proc view of the jailed process) and, where it matters, from inside.
 */

let work: string;
let idsDir: string;
const held: JailId[] = [];
const running: ChildProcess[] = [];

function freshRoot(): string {
  const root = fs.mkdtempSync(path.join(work, 'root-'));
  fs.chmodSync(root, 0o700);
  return root;
}

/** What /usr-only programs need on a merged-/usr host. */
function baseSpec(jid: JailId, root: string): JailSpec {
  return {
    uid: jid.id,
    gid: jid.id,
    root,
    roBinds: ['/usr', '/etc/ld.so.cache'],
    symlinks: [
      { target: 'usr/bin', link: '/bin' },
      { target: 'usr/lib', link: '/lib' },
      { target: 'usr/lib64', link: '/lib64' },
    ],
  };
}

function reserve(): JailId {
  const jid = reserveJailId({ dir: idsDir });
  held.push(jid);
  return jid;
}

function startJailed(spec: JailSpec, program: string, args: string[]): { child: ChildProcess; out: () => string; err: () => string; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  const child = spawn(jailerBinary(), jailerArgs(spec, program, args), { stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(child);
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('close', (code, signal) => r({ code, signal })));
  return { child, out: () => out, err: () => err, exited };
}

async function until<T>(fn: () => T | undefined, what: string, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function childOf(pid: number): number | undefined {
  try {
    const first = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0];
    return first ? Number(first) : undefined;
  } catch {
    return undefined;
  }
}



const NS = ['mnt', 'pid', 'net', 'ipc', 'uts'] as const;
const nsOf = (pid: number | 'self', ns: string) => fs.readlinkSync(`/proc/${pid}/ns/${ns}`);

beforeAll(() => {
  jailerBinary(); // fails early and clearly when the jailer was not built
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-jailer-'));
  idsDir = path.join(work, 'ids');
});

afterAll(() => {
  for (const c of running.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const j of held) releaseJailId(j);
  fs.rmSync(work, { recursive: true, force: true });
});

describe('vrun-jailer, seen from the host', () => {
  let jid: JailId;
  let cg: PodCgroups;
  let jailer: ReturnType<typeof startJailed>;
  let pid: number;
  let root: string;
  let rw: string;

  beforeAll(async () => {
    jid = reserve();
    cg = createPodCgroups(`test-${process.pid}-${jid.id}`, { memoryBytes: 64 * 1024 * 1024, pids: 32 });
    root = freshRoot();
    rw = fs.mkdtempSync(path.join(work, 'rw-'));
    fs.chownSync(rw, jid.id, jid.id);
    const spec: JailSpec = { ...baseSpec(jid, root), rwBinds: [rw], cgroups: cg.dirs, rlimits: { nofile: [100, 200], nproc: 50, core: 0, fsize: 1 << 20 } };
    jailer = startJailed(spec, '/bin/sh', ['-c', 'echo up; exec /bin/sleep 60']);
    await until(() => jailer.out().includes('up'), 'the jailed shell');
    pid = await until(() => childOf(jailer.child.pid ?? 0), "the jailer's child");
  });

  afterAll(async () => {
    jailer.child.kill('SIGKILL');
    await jailer.exited;
    await cg.remove();
  });

  it('runs the program with the jail uid/gid, no supplementary groups, no capabilities, no_new_privs', () => {
    expect(statusField(pid, 'Uid').split(/\s+/)).toEqual(Array(4).fill(String(jid.id)));
    expect(statusField(pid, 'Gid').split(/\s+/)).toEqual(Array(4).fill(String(jid.id)));
    expect(statusField(pid, 'Groups')).toBe('');
    expect(statusField(pid, 'CapEff')).toBe('0000000000000000');
    expect(statusField(pid, 'CapPrm')).toBe('0000000000000000');
    expect(statusField(pid, 'CapBnd')).toBe('0000000000000000');
    expect(statusField(pid, 'NoNewPrivs')).toBe('1');
  });

  it('is pid 1 of its own pid namespace, in its own mount, net, ipc and uts namespaces', () => {
    expect(statusField(pid, 'NSpid').split(/\s+/)).toEqual([String(pid), '1']);
    for (const ns of NS) expect(nsOf(pid, ns), ns).not.toBe(nsOf('self', ns));
    // The jailer stays in the host's namespaces for pid and mount: only its child is jailed.
    expect(nsOf(jailer.child.pid ?? 0, 'mnt')).toBe(nsOf('self', 'mnt'));
  });

  it('sees only what was bound, under a read-only root', () => {
    const rootDir = `/proc/${pid}/root`;
    expect(fs.readdirSync(rootDir).sort()).toEqual(['bin', 'dev', 'etc', 'lib', 'lib64', 'tmp', 'usr']);
    expect(fs.readdirSync(`${rootDir}/dev`).sort()).toEqual(['null', 'urandom', 'zero']);
    expect(fs.readdirSync(`${rootDir}/etc`)).toEqual(['ld.so.cache']);
    const mounts = fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8').trim().split('\n').map((l) => l.split(' '));
    const byPoint = new Map(mounts.map((f) => [f[4], f[5] ?? '']));
    expect(byPoint.get('/')).toMatch(/(^|,)ro(,|$)/);
    expect(byPoint.get('/usr')).toMatch(/(^|,)ro(,|$)/);
    expect(byPoint.get('/usr')).toMatch(/nosuid/);
    expect(byPoint.get(rw)).toMatch(/(^|,)rw(,|$)/);
    // Nothing of the host's other mounts (the old root was detached).
    expect([...byPoint.keys()].sort()).toEqual(['/', '/dev/null', '/dev/urandom', '/dev/zero', '/etc/ld.so.cache', '/usr', rw].sort());
  });

  it('applies the rlimits', () => {
    const limits = fs.readFileSync(`/proc/${pid}/limits`, 'utf8');
    expect(limits).toMatch(/^Max open files\s+100\s+200\s+files/m);
    expect(limits).toMatch(/^Max processes\s+50\s+50\s+processes/m);
    expect(limits).toMatch(/^Max core file size\s+0\s+0\s+bytes/m);
    expect(limits).toMatch(/^Max file size\s+1048576\s+1048576\s+bytes/m);
  });

  it('puts the program (and the jailer) in the given cgroups, with their limits', () => {
    expect(cg.applied).toEqual(expect.arrayContaining(['memory', 'pids']));
    const membership = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    for (const dir of cg.dirs) {
      const procs = fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').map(Number);
      expect(procs).toContain(pid);
      expect(procs).toContain(jailer.child.pid);
      expect(membership).toContain(`/vrun/test-${process.pid}-${jid.id}\n`);
    }
    const pidsDir = cg.dirs.find((d) => fs.existsSync(path.join(d, 'pids.max')));
    expect(fs.readFileSync(path.join(pidsDir ?? '', 'pids.max'), 'utf8').trim()).toBe('32');
  });

  it('takes the program down when the jailer is SIGKILLed, and ends by the same signal', async () => {
    expect(isAlive(pid)).toBe(true);
    jailer.child.kill('SIGKILL');
    expect(await jailer.exited).toEqual({ code: null, signal: 'SIGKILL' });
    await until(() => !isAlive(pid), 'the jailed program to die', 5000);
    await cg.remove();
    for (const dir of cg.dirs) expect(fs.existsSync(dir)).toBe(false);
  });
});

describe('vrun-jailer, seen from inside', () => {
  it('cannot write to its root or to bound read-only paths, can write where bound read-write and to /dev/null', async () => {
    const jid = reserve();
    const rw = fs.mkdtempSync(path.join(work, 'rw-'));
    fs.chownSync(rw, jid.id, jid.id);
    const script = [
      'id -u; id -g',
      'touch /x 2>&1 || true',
      'touch /usr/x 2>&1 || true',
      'mkdir /tmp/y 2>&1 || true',
      `touch ${rw}/ok && echo rw-ok`,
      'echo hi > /dev/null && echo devnull-ok',
      'head -c 4 /dev/urandom | wc -c',
      'hostname',
      'ls /proc | grep -c "^[0-9]"',
    ].join('\n');
    const j = startJailed({ ...baseSpec(jid, freshRoot()), rwBinds: [rw], proc: true, hostname: 'jailed' }, '/bin/sh', ['-c', script]);
    expect((await j.exited).code, j.err()).toBe(0);
    const lines = j.out().trim().split('\n');
    expect(lines.slice(0, 2)).toEqual([String(jid.id), String(jid.id)]);
    expect(lines[2]).toMatch(/\/x.*Read-only file system/);
    expect(lines[3]).toMatch(/\/usr\/x.*Read-only file system/);
    expect(lines[4]).toMatch(/Read-only file system/);
    expect(lines.slice(5)).toEqual(['rw-ok', 'devnull-ok', '4', 'jailed', expect.stringMatching(/^[1-4]$/)]);
    expect(fs.statSync(path.join(rw, 'ok')).uid).toBe(jid.id);
  });

  it('builds a root its program can traverse whatever the caller\'s umask, and gives the program that umask', async () => {
    const jid = reserve();
    const args = jailerArgs(baseSpec(jid, freshRoot()), '/bin/sh', ['-c', 'umask; cat /etc/ld.so.cache > /dev/null && echo cache-ok']);
    const j = spawnSync('/bin/sh', ['-c', 'umask 077; exec "$@"', 'sh', jailerBinary(), ...args], { encoding: 'utf8' });
    expect(j.stderr).toBe('');
    expect(j.stdout).toBe('0077\ncache-ok\n');
  });

  it('passes the exit code through, and forwards SIGTERM to a program that handles it', async () => {
    const jid = reserve();
    const exit7 = startJailed(baseSpec(jid, freshRoot()), '/bin/sh', ['-c', 'exit 7']);
    expect((await exit7.exited).code).toBe(7);
    const trapper = startJailed(baseSpec(jid, freshRoot()), '/bin/sh', ['-c', 'trap "exit 42" TERM; echo up; /bin/sleep 30 & wait']);
    await until(() => trapper.out().includes('up'), 'the trap to be set');
    trapper.child.kill('SIGTERM');
    expect(await trapper.exited).toEqual({ code: 42, signal: null });
  });

  it('starts the program with an empty environment and no inherited fds above 2', async () => {
    const jid = reserve();
    const fd = fs.openSync('/dev/null', 'r');
    try {
      const j = spawn(jailerBinary(), jailerArgs({ ...baseSpec(jid, freshRoot()), proc: true, env: { ONLY: 'me' } }, '/bin/sh', ['-c', 'env; ls /proc/self/fd']), {
        stdio: ['ignore', 'pipe', 'pipe', fd],
      });
      let out = '';
      j.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      const code = await new Promise((r) => j.on('close', r));
      expect(code).toBe(0);
      const lines = out.trim().split('\n');
      expect(lines.filter((l) => l.includes('='))).toEqual(expect.arrayContaining(['ONLY=me']));
      expect(lines.filter((l) => l.includes('=') && !/^(ONLY|PWD|SHLVL|_)=/.test(l))).toEqual([]);
      // 0-2, and the fd ls opens to list the directory.
      expect(lines.filter((l) => /^\d+$/.test(l)).map(Number).sort()).toEqual([0, 1, 2, 3]);
    } finally {
      fs.closeSync(fd);
    }
  });
});

describe('vrun-jailer in a pod network namespace', () => {
  // Made by this test, with only a tap in it (no link anywhere): nothing touches the host's own network.
  const nsName = `vrun-test-jailer-${process.pid}`;
  const netns = `/run/netns/${nsName}`;
  const ip = (...args: string[]) => {
    const r = spawnSync('ip', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  beforeAll(() => {
    ip('netns', 'add', nsName);
    for (const tap of ['tapj0', 'tapj1']) ip('-n', nsName, 'tuntap', 'add', 'dev', tap, 'mode', 'tap', 'vnet_hdr');
  });

  afterAll(() => {
    spawnSync('ip', ['netns', 'delete', nsName]);
  });

  it('joins the namespace and hands the program each tap as the fd asked for, without /dev/net/tun in the jail', async () => {
    const jid = reserve();
    // fds 3 and 4: where the jailer's own pipe would be, had it not moved it.
    const script = 'id -u; readlink /proc/self/ns/net; grep -h ^iff: /proc/self/fdinfo/4 /proc/self/fdinfo/3; ls /dev; ls /proc/self/fd';
    const j = startJailed({ ...baseSpec(jid, freshRoot()), proc: true, netns, taps: [{ fd: 4, name: 'tapj0' }, { fd: 3, name: 'tapj1' }] }, '/bin/sh', ['-c', script]);
    expect((await j.exited).code, j.err()).toBe(0);
    const lines = j.out().trim().split('\n');
    expect(lines[0]).toBe(String(jid.id));
    expect(lines[1]).toBe(`net:[${fs.statSync(netns).ino}]`);
    expect(lines[2]).toMatch(/^iff:\s+tapj0$/);
    expect(lines[3]).toMatch(/^iff:\s+tapj1$/);
    expect(lines.slice(4, 7)).toEqual(['null', 'urandom', 'zero']);
    // 0-2, the taps, and the fd ls lists the directory with.
    expect(lines.slice(7).map(Number).sort()).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('refuses a tap that is not in the namespace, and leaves none behind', () => {
    const jid = reserve();
    const r = spawnSync(jailerBinary(), jailerArgs({ ...baseSpec(jid, freshRoot()), netns, taps: [{ fd: 3, name: 'tapnone' }] }, '/bin/true'), { encoding: 'utf8' });
    expect(r.status).toBe(125);
    expect(r.stderr).toBe('vrun-jailer: --tap 3:tapnone: no such tap in the namespace\n');
    expect(ip('-n', nsName, '-o', 'link', 'show')).not.toContain('tapnone');
  });

  it('refuses an interface that is not a tap', () => {
    const jid = reserve();
    const r = spawnSync(jailerBinary(), jailerArgs({ ...baseSpec(jid, freshRoot()), netns, taps: [{ fd: 3, name: 'lo' }] }, '/bin/true'), { encoding: 'utf8' });
    expect(r.status).toBe(125);
    expect(r.stderr).toMatch(/^vrun-jailer: --tap 3:lo: attach \(TUNSETIFF\): Invalid argument\n$/);
  });

  it('binds /dev/net/tun when asked, as a device node only', async () => {
    const jid = reserve();
    const j = startJailed({ ...baseSpec(jid, freshRoot()), devs: ['net/tun'] }, '/bin/sh', ['-c', 'ls /dev /dev/net']);
    expect((await j.exited).code, j.err()).toBe(0);
    expect(j.out()).toBe('/dev:\nnet\nnull\nurandom\nzero\n\n/dev/net:\ntun\n');
  });
});

describe('vrun-jailer argument checks', () => {
  const run = (args: string[]) => spawnSync(jailerBinary(), args, { encoding: 'utf8' });

  it.each([
    ['no uid', (r: string) => ['--gid', '7', '--root', r, '--', '/bin/true'], /--uid\/--gid: both are required/],
    ['uid 0', (r: string) => ['--uid', '0', '--gid', '7', '--root', r, '--', '/bin/true'], /must not be 0/],
    ['a non-number uid', (r: string) => ['--uid', '12x', '--gid', '7', '--root', r, '--', '/bin/true'], /--uid: "12x" is not a number/],
    ['no root', () => ['--uid', '7', '--gid', '7', '--', '/bin/true'], /--root: required/],
    ['a relative program', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--', 'true'], /program: "true" is not an absolute path/],
    ['an unknown option', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--frobnicate', '--', '/bin/true'], /--frobnicate: unknown option/],
    ['a bind through a symlink', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--ro-bind', '/lib/x86_64-linux-gnu', '--', '/bin/true'], /not a canonical path \(it resolves to \/usr\/lib\/x86_64-linux-gnu\)/],
    ['a missing bind source', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--ro-bind', '/nonexistent', '--', '/bin/true'], /--ro-bind \/nonexistent: No such file or directory/],
    ['nested binds', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--ro-bind', '/usr', '--ro-bind', '/usr/share', '--', '/bin/true'], /--ro-bind \/usr\/share: overlaps \/usr/],
    ['a bad device', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--dev', '../etc/passwd', '--', '/bin/true'], /--dev \.\.\/etc\/passwd: not a plain device name/],
    ['a bad rlimit', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--rlimit', 'stack=1', '--', '/bin/true'], /unknown limit "stack"/],
    ['a soft limit above the hard one', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--rlimit', 'nofile=10:5', '--', '/bin/true'], /soft limit is above the hard one/],
    ['a missing cgroup', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--cgroup', '/sys/fs/cgroup/pids/nope', '--', '/bin/true'], /--cgroup \/sys\/fs\/cgroup\/pids\/nope\/cgroup.procs: No such file/],
    ['a device outside /dev', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--dev', 'net/../../etc', '--', '/bin/true'], /--dev net\/\.\.\/\.\.\/etc: not a plain device name/],
    ['a tap without --netns', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--tap', '3:tap0', '--', '/bin/true'], /--tap 3:tap0: needs --netns PATH/],
    ['a tap on stdio', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--tap', '2:tap0', '--', '/bin/true'], /--tap: "2:tap0": fds 0-2 are stdio/],
    ['a tap fd out of range', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--tap', '256:tap0', '--', '/bin/true'], /--tap: "256" is out of range/],
    ['a tap name with a comma', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--netns', '/proc/self/ns/net', '--tap', '3:a,b', '--', '/bin/true'], /--tap 3:a,b: not a valid interface name/],
    ['a tap name too long', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--netns', '/proc/self/ns/net', '--tap', '3:abcdefghijklmnop', '--', '/bin/true'], /not a valid interface name/],
    ['one tap fd twice', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--netns', '/proc/self/ns/net', '--tap', '3:a', '--tap', '3:b', '--', '/bin/true'], /--tap 3:b: fd 3 is given twice/],
    ['a missing netns', (r: string) => ['--uid', '7', '--gid', '7', '--root', r, '--netns', '/run/netns/nope', '--', '/bin/true'], /--netns \/run\/netns\/nope: No such file/],
  ])('rejects %s with one clear line and status 125', (_what, args, message) => {
    const r = run(args(freshRoot()));
    expect(r.status).toBe(125);
    expect(r.stderr).toMatch(/^vrun-jailer: [^\n]+\n$/);
    expect(r.stderr).toMatch(message);
  });

  it('rejects a root that is not empty, not root-owned, or open to others', () => {
    const full = freshRoot();
    fs.writeFileSync(path.join(full, 'f'), '');
    const open = freshRoot();
    fs.chmodSync(open, 0o777);
    const foreign = freshRoot();
    fs.chownSync(foreign, 1234, 1234);
    const base = ['--uid', '7', '--gid', '7'];
    expect(run([...base, '--root', full, '--', '/bin/true']).stderr).toMatch(/--root .*: not empty/);
    expect(run([...base, '--root', open, '--', '/bin/true']).stderr).toMatch(/--root .*: writable by group or others/);
    expect(run([...base, '--root', foreign, '--', '/bin/true']).stderr).toMatch(/--root .*: not owned by root/);
  });

  it('reports a program missing from the jail as the jailer\'s failure', () => {
    const jid = reserve();
    const r = run(jailerArgs(baseSpec(jid, freshRoot()), '/sbin/nope'));
    expect(r.status).toBe(125);
    expect(r.stderr).toBe('vrun-jailer: execve /sbin/nope: No such file or directory\n');
  });
});

describe('jail ids', () => {
  it('gives live reservations distinct ids from the high range and reuses released ones', () => {
    const a = reserve();
    const b = reserve();
    expect(a.id).not.toBe(b.id);
    for (const j of [a, b]) expect(j.id).toBeGreaterThanOrEqual(JAIL_ID_BASE);
    releaseJailId(a);
    expect(isJailIdReserved(a.id, idsDir)).toBe(false);
    const c = reserve();
    expect(c.id).toBe(a.id);
  });

  it('reclaims an id whose holders are dead, removing its stale cgroups', () => {
    const dir = path.join(work, 'ids-stale');
    const stale = reserveJailId({ dir });
    const gone = spawnSync('/bin/true');
    const staleCgroup = fs.mkdtempSync(path.join(work, 'fake-cgroup-'));
    fs.writeFileSync(stale.file, JSON.stringify({ holders: [{ pid: gone.pid, start: '1' }], cgroups: [staleCgroup] }));
    const again = reserveJailId({ dir });
    expect(again.id).toBe(stale.id);
    expect(fs.existsSync(staleCgroup)).toBe(false);
    expect(JSON.parse(fs.readFileSync(again.file, 'utf8')).holders[0].pid).toBe(process.pid);
  });

  it('frees every stale id on a sweep (cleanup after a crashed sandbox), and keeps live ones', () => {
    const dir = path.join(work, 'ids-sweep');
    const live = reserveJailId({ dir });
    const stale = reserveJailId({ dir });
    const gone = spawnSync('/bin/true');
    const staleCgroup = fs.mkdtempSync(path.join(work, 'fake-cgroup-'));
    fs.writeFileSync(stale.file, JSON.stringify({ holders: [{ pid: gone.pid, start: '1' }], cgroups: [staleCgroup] }));
    expect(reclaimStaleJailIds(dir)).toEqual([stale.id]);
    expect(isJailIdReserved(stale.id, dir)).toBe(false);
    expect(isJailIdReserved(live.id, dir)).toBe(true);
    expect(fs.existsSync(staleCgroup)).toBe(false);
  });
});
