import { execFileSync } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentError } from '../../src/agent/host/agent-error.js';
import { AgentClient, type OomEvent } from '../../src/agent/host/client.js';
import { busyboxSpec } from '../../src/agent/host/host-process.js';
import { ensureGuestImage } from '../../src/guest-image/image.js';
import { Virtiofsd } from '../../src/vmm/vhost-user/virtiofsd.js';
import { bootGuestImage, type BootedGuest } from '../helpers/guest-runner.js';

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('agent inside the guest under QEMU TCG, over the vrun.agent port', () => {
  let guest: BootedGuest;
  let socketPath: string;
  let client: AgentClient;
  let rootfs: string;
  let hostShare: string;
  let virtiofsd: Virtiofsd;

  beforeAll(async () => {
    await ensureGuestImage();
    const { mkdtemp } = await import('node:fs/promises');
    const os = await import('node:os');
    const workDir = await mkdtemp(path.join(os.tmpdir(), 'vrun-agent-guest-'));
    socketPath = path.join(workDir, 'agent.sock');
    // A host directory shared over virtio-fs: a busybox rootfs made on the host, and a marker file.
    hostShare = path.join(workDir, 'share');
    await mkdir(path.join(hostShare, 'rootfs', 'bin'), { recursive: true });
    for (const d of ['proc', 'dev', 'tmp', 'etc']) await mkdir(path.join(hostShare, 'rootfs', d));
    await copyFile('/bin/busybox', path.join(hostShare, 'rootfs', 'bin', 'busybox'));
    await chmod(path.join(hostShare, 'rootfs', 'bin', 'busybox'), 0o755);
    for (const applet of ['sh', 'cat', 'touch', 'echo']) await symlink('busybox', path.join(hostShare, 'rootfs', 'bin', applet));
    await writeFile(path.join(hostShare, 'rootfs', 'marker'), 'from the host\n');
    virtiofsd = await Virtiofsd.start({ socketPath: path.join(workDir, 'fs.sock'), sharedDir: hostShare });
    guest = await bootGuestImage({
      accel: 'tcg',
      workDir,
      memoryMiB: 1024,
      timeoutMs: 300_000,
      ports: [{ name: 'vrun.agent', socketPath }],
      shares: [{ tag: 'podshare', socketPath: virtiofsd.socketPath }],
    });
    client = await AgentClient.connect(socketPath, { callTimeoutMs: 180_000, timeoutMs: 240_000 });
    rootfs = await client.createBusyboxRootfs('busybox');
  });
  afterAll(async () => {
    client?.close();
    await guest?.dispose();
    await virtiofsd?.stop();
  });

  it('starts from the code cache made with the initrd (a refused cache means the initrd and node disagree)', () => {
    expect(/vrun-agent: serving on .* \(code cache: (\w+)\)/.exec(guest.vm.console.recent(400))?.[1]).toBe('accepted');
  });

  it('reports the guest: its own kernel, pure cgroup v2 with memory and pids for containers', async () => {
    expect(await client.health()).toBe(true);
    const d = await client.guestDetails();
    expect(d.kernelRelease).toMatch(/^6\.1\./);
    expect(d.cgroupMode).toBe('v2');
    expect(d.cgroupControllers).toEqual(expect.arrayContaining(['memory', 'pids', 'cpu']));
    expect(d.nodeVersion).toBe(process.version);
    // The initrd's crun is the host's: the version the initrd build recorded for it must be the host crun's.
    expect(d.crunVersion).toBe(execFileSync('crun', ['--version'], { encoding: 'utf8' }).split('\n')[0]);
  });

  it('creates, starts and waits for echo: output and exit code', async () => {
    await client.createContainer({ containerId: 'echo', spec: busyboxSpec(['sh', '-c', 'echo hello from the guest; exit 7']), rootfs });
    const out = readAll(client.readOutput({ containerId: 'echo' }, 'stdout'));
    await client.startContainer('echo');
    expect(await client.waitProcess({ containerId: 'echo' })).toEqual({ exitStatus: 7, signal: 0, oomKilled: false });
    expect(await out).toBe('hello from the guest\n');
    await client.removeContainer('echo');
  });

  it('execs into a running container', async () => {
    await client.createContainer({ containerId: 'ex', spec: busyboxSpec(['sleep', '1000']), rootfs });
    await client.startContainer('ex');
    await client.execProcess({ containerId: 'ex', execId: 'e1', process: { args: ['sh', '-c', 'cat /proc/1/cmdline; exit 4'], env: ['PATH=/bin'], cwd: '/' } });
    const out = await readAll(client.readOutput({ containerId: 'ex', execId: 'e1' }, 'stdout'));
    expect(await client.waitProcess({ containerId: 'ex', execId: 'e1' })).toEqual({ exitStatus: 4, signal: 0, oomKilled: false });
    expect(out).toBe('sleep\u00001000\u0000');
    await client.removeContainer('ex', { force: true });
  });

  it('reports an OOM kill under a memory limit, as an event and in wait', async () => {
    const events = client.oomEvents();
    const seen: OomEvent[] = [];
    events.on('data', (e: OomEvent) => seen.push(e));
    events.on('error', () => undefined);
    const limit = 32 * 1024 * 1024;
    // dd's 64 MiB buffer cannot fit under a 32 MiB limit without swap.
    const spec = busyboxSpec(['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=4'], { linux: { resources: { memory: { limit, swap: limit } } } });
    await client.createContainer({ containerId: 'oom', spec, rootfs });
    await client.startContainer('oom');
    const exit = await client.waitProcess({ containerId: 'oom' });
    expect(exit).toEqual({ exitStatus: 137, signal: 9, oomKilled: true });
    const stats = await client.stats('oom');
    expect(stats.memory.limitBytes).toBe(limit);
    expect(stats.memory.oomKillEvents).toBeGreaterThanOrEqual(1);
    for (let i = 0; i < 50 && !seen.some((e) => e.containerId === 'oom'); i++) await sleep(200);
    expect(seen.find((e) => e.containerId === 'oom')?.oomKillCount).toBeGreaterThanOrEqual(1);
    events.destroy();
    await client.removeContainer('oom');
  });

  it('stops a fork bomb at the pids limit, and the guest keeps serving', async () => {
    const spec = busyboxSpec(['sh', '-c', 'b() { b | b & }; b; sleep 1000'], { linux: { resources: { pids: { limit: 24 } } } });
    await client.createContainer({ containerId: 'bomb', spec, rootfs });
    const err = readAll(client.readOutput({ containerId: 'bomb' }, 'stderr'));
    await client.startContainer('bomb');
    await sleep(5000);
    const stats = await client.stats('bomb');
    expect(stats.pids.limit).toBe(24);
    // The bomb may have collapsed already (its own shell cannot fork either); it never got past the limit.
    expect(stats.pids.current).toBeLessThanOrEqual(24);
    expect(await client.health()).toBe(true);
    await client.removeContainer('bomb', { force: true });
    expect(await err).toMatch(/can't fork|Resource temporarily unavailable/);
  });

  it('shows CPU and memory use in stats', async () => {
    await client.createContainer({ containerId: 'st', spec: busyboxSpec(['sleep', '1000']), rootfs });
    await client.startContainer('st');
    const before = await client.stats('st');
    // 24 MiB into the container's tmpfs (charged to its memory cgroup) and a busy loop.
    await client.execProcess({ containerId: 'st', execId: 'load', process: { args: ['sh', '-c', 'dd if=/dev/zero of=/tmp/fill bs=1M count=24 2>/dev/null; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done'], env: ['PATH=/bin'] } });
    expect((await client.waitProcess({ containerId: 'st', execId: 'load' })).exitStatus).toBe(0);
    const after = await client.stats('st');
    expect(after.cpu.usageUsec).toBeGreaterThan(before.cpu.usageUsec);
    expect(after.memory.currentBytes - before.memory.currentBytes).toBeGreaterThanOrEqual(16 * 1024 * 1024);
    expect(after.controllers).toEqual(expect.arrayContaining(['cpu', 'memory', 'pids']));
    await client.removeContainer('st', { force: true });
  });

  it('updates memory and pids limits of a running container, seen in its own cgroup files', async () => {
    // A cgroup namespace and a cgroup mount: the container reads its own limits at /sys/fs/cgroup.
    const base = busyboxSpec(['sleep', '1000'], { linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }, { type: 'cgroup' }], resources: { memory: { limit: 64 * 1024 * 1024 }, pids: { limit: 40 } } } });
    const spec = { ...base, mounts: [...(base.mounts ?? []), { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'ro'] }] };
    await client.createContainer({ containerId: 'upd', spec, rootfs });
    await client.startContainer('upd');
    const limits = async (execId: string) => {
      await client.execProcess({ containerId: 'upd', execId, process: { args: ['cat', '/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/pids.max'], env: ['PATH=/bin'] } });
      const out = await readAll(client.readOutput({ containerId: 'upd', execId }, 'stdout'));
      expect((await client.waitProcess({ containerId: 'upd', execId })).exitStatus).toBe(0);
      return out;
    };
    expect(await limits('before')).toBe(`${64 * 1024 * 1024}\n40\n`);
    await client.updateResources('upd', { memory: { limit: 48 * 1024 * 1024 }, pids: { limit: 20 } });
    expect(await limits('after')).toBe(`${48 * 1024 * 1024}\n20\n`);
    const stats = await client.stats('upd');
    expect({ memory: stats.memory.limitBytes, pids: stats.pids.limit }).toEqual({ memory: 48 * 1024 * 1024, pids: 20 });
    const bad = await client.updateResources('upd', { pids: { limit: 'many' } }).then(() => null, (e: unknown) => e);
    expect(bad).toBeInstanceOf(AgentError);
    expect(await limits('unchanged')).toBe(`${48 * 1024 * 1024}\n20\n`);
    await client.removeContainer('upd', { force: true });
  });

  it('runs an exec with a terminal in the guest, resize visible to stty size', async () => {
    await client.createContainer({ containerId: 'tty', spec: busyboxSpec(['sleep', '1000']), rootfs });
    await client.startContainer('tty');
    const ref = { containerId: 'tty', execId: 't1' };
    await client.execProcess({ ...ref, process: { args: ['sh', '-c', 'read x; stty size; echo got:$x'], env: ['PATH=/bin'] }, stdio: 'terminal' });
    const out = readAll(client.readOutput(ref, 'stdout'));
    await client.resizeTerminal(ref, { rows: 17, cols: 101 });
    const stdin = client.writeStdin(ref, { closeOnEnd: false });
    stdin.end('go\n');
    await stdin.written;
    expect((await client.waitProcess(ref)).exitStatus).toBe(0);
    expect((await out).split('\r\n')).toEqual(['go', '17 101', 'got:go', '']);
    await client.removeContainer('tty', { force: true });
  });

  it('pauses (freezes) and resumes (thaws) a container', async () => {
    await client.createContainer({ containerId: 'pz', spec: busyboxSpec(['sh', '-c', 'while true; do echo t; sleep 0.1; done']), rootfs });
    let ticks = 0;
    const out = client.readOutput({ containerId: 'pz' }, 'stdout');
    out.on('data', (b: Buffer) => (ticks += b.toString().split('t').length - 1));
    out.on('error', () => undefined);
    await client.startContainer('pz');
    for (let i = 0; i < 100 && ticks < 3; i++) await sleep(100);
    expect(ticks).toBeGreaterThanOrEqual(3);
    await client.pauseContainer('pz');
    await sleep(500);
    const frozenAt = ticks;
    await sleep(2000);
    expect(ticks).toBe(frozenAt);
    await client.resumeContainer('pz');
    for (let i = 0; i < 100 && ticks < frozenAt + 3; i++) await sleep(100);
    expect(ticks).toBeGreaterThanOrEqual(frozenAt + 3);
    await client.removeContainer('pz', { force: true });
    out.destroy();
  });

  it('mounts a virtio-fs share by tag, read-only or read-write, and runs a container from it', async () => {
    const ro = await client.mountShare({ tag: 'podshare', path: 'ro', readonly: true });
    await client.createContainer({ containerId: 'fs-ro', spec: busyboxSpec(['sh', '-c', 'cat /marker; touch /x 2>&1; exit 0']), rootfs: path.join(ro, 'rootfs') });
    const roOut = readAll(client.readOutput({ containerId: 'fs-ro' }, 'stdout'));
    const roErr = readAll(client.readOutput({ containerId: 'fs-ro' }, 'stderr'));
    await client.startContainer('fs-ro');
    const roExit = await client.waitProcess({ containerId: 'fs-ro' });
    expect({ exit: roExit.exitStatus, stderr: await roErr }).toEqual({ exit: 0, stderr: '' });
    expect(await roOut).toMatch(/^from the host\ntouch: \/x: Read-only file system\n$/);
    await client.removeContainer('fs-ro');

    const rw = await client.mountShare({ tag: 'podshare', path: 'rw', readonly: false });
    await client.createContainer({ containerId: 'fs-rw', spec: busyboxSpec(['sh', '-c', 'echo written in the guest > /from-guest']), rootfs: path.join(rw, 'rootfs') });
    const rwErr = readAll(client.readOutput({ containerId: 'fs-rw' }, 'stderr'));
    await client.startContainer('fs-rw');
    expect({ exit: (await client.waitProcess({ containerId: 'fs-rw' })).exitStatus, stderr: await rwErr }).toEqual({ exit: 0, stderr: '' });
    await client.removeContainer('fs-rw');
    expect(await readFile(path.join(hostShare, 'rootfs', 'from-guest'), 'utf8')).toBe('written in the guest\n');

    const escape = await client.mountShare({ tag: 'podshare', path: '../../etc', readonly: true }).then(() => null, (e: unknown) => e);
    expect(escape).toBeInstanceOf(AgentError);
  });

  it('shuts the guest down on request', async () => {
    await client.shutdown();
    const exit = await Promise.race([guest.vm.exited, sleep(120_000).then(() => Promise.reject(new Error('the guest did not power off')))]);
    expect(exit.end).toMatchObject({ kind: 'exit', guestStatus: 0 });
  });
});
