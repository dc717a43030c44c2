import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive } from '../../src/sandbox/cleanup.js';
import { childrenOf, statusField } from './helpers/proc-status.js';
import { AgentClient } from '../../src/agent/host/client.js';
import { ensureGuestImage, loadGuestImage } from '../../src/guest-image/image.js';
import { USERNS_RANGE_BASE, USERNS_RANGE_SIZE, isJailIdReserved } from '../../src/vmm/jail/ids.js';
import { pidsMax } from '../../src/vmm/jail/qemu-jail.js';
import { BASE_CMDLINE, READY_PATTERN } from '../../src/guest-image/guest-contract.js';
import type { RunningVm } from '../../src/vmm/backend.js';
import { launchQemu } from '../../src/vmm/qemu/backend.js';
import { Virtiofsd } from '../../src/vmm/vhost-user/virtiofsd.js';

/**
 * The real guest image under a jailed QEMU, through the backend the sandbox uses (launchQemu): QEMU must come up confined
 * (non-root, seccomp, no_new_privs, its own namespaces, in its cgroups), still reach its sockets and the guest
 * agent must answer through the jail; killing it must leave no cgroup, jail root or id reservation behind.
 */



describe('QEMU under the jailer (TCG)', () => {
  let work: string;
  let runDir: string;
  let vm: RunningVm;
  let fsd: Virtiofsd;
  let qemuPid: number;
  let jailId: number;
  let cgroupDirs: string[];
  const lines: string[] = [];

  beforeAll(async () => {
    await ensureGuestImage();
    const image = await loadGuestImage('guest-image');
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-jailed-qemu-'));
    runDir = path.join(work, 'vm');
    fs.mkdirSync(runDir, { mode: 0o700 });
    const shared = path.join(work, 'shared');
    fs.mkdirSync(shared);
    fsd = await Virtiofsd.start({ socketPath: path.join(runDir, 'fs0.sock'), sharedDir: shared });
    const logger = (await import('pino')).default({ level: 'info' }, { write: (l: string) => void lines.push(l) });
    vm = launchQemu(
      { backend: 'qemu', accel: 'tcg' },
      {
        kernel: image.kernel,
        initrd: image.initrd,
        cmdline: `${BASE_CMDLINE} quiet`,
        vcpus: 2,
        memoryMiB: 512,
        runDir,
        agentSocket: path.join(runDir, 'agent.sock'),
        shares: [{ tag: 'test-share', socketPath: fsd.socketPath }],
        consoleLog: path.join(work, 'console.log'),
      },
      logger,
    );
    await vm.console.waitFor(READY_PATTERN, 240_000, 'VRUN-READY');
    qemuPid = vm.vmmPid?.() ?? 0;
    const jailLine = lines.map((l) => JSON.parse(l) as { jailId?: number; cgroups?: string[] }).find((l) => l.jailId !== undefined);
    jailId = jailLine?.jailId ?? 0;
    cgroupDirs = fs
      .readFileSync(`/proc/${qemuPid}/cgroup`, 'utf8')
      .split('\n')
      .flatMap((l) => {
        const [, ctrl, p] = l.split(':');
        return ctrl && p && ['memory', 'pids', 'cpu'].includes(ctrl) ? [path.join('/sys/fs/cgroup', ctrl, p)] : [];
      });
  });

  afterAll(async () => {
    await vm?.kill();
    await fsd?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('runs QEMU under the jailer, not as root, with its seccomp filter and no_new_privs', () => {
    expect(qemuPid).toBeGreaterThan(0);
    expect(qemuPid).not.toBe(vm.pid);
    expect(fs.readFileSync(`/proc/${qemuPid}/cmdline`, 'utf8').split('\0')).toContain('on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
    const uids = statusField(qemuPid, 'Uid').split(/\s+/).map(Number);
    expect(uids).toEqual([jailId, jailId, jailId, jailId]);
    expect(jailId).toBeGreaterThanOrEqual(0x6b000000);
    expect(statusField(qemuPid, 'Gid').split(/\s+/).map(Number)).toEqual([jailId, jailId, jailId, jailId]);
    expect(statusField(qemuPid, 'Seccomp')).toBe('2');
    expect(statusField(qemuPid, 'NoNewPrivs')).toBe('1');
    expect(statusField(qemuPid, 'CapEff')).toBe('0000000000000000');
    expect(statusField(qemuPid, 'NSpid').split(/\s+/)).toEqual([String(qemuPid), '1']);
  });

  it('runs QEMU in its own namespaces, with a root of only what it needs', () => {
    for (const ns of ['mnt', 'pid', 'net', 'ipc', 'uts']) {
      expect(fs.readlinkSync(`/proc/${qemuPid}/ns/${ns}`), ns).not.toBe(fs.readlinkSync(`/proc/self/ns/${ns}`));
    }
    const top = fs.readdirSync(`/proc/${qemuPid}/root`).sort();
    expect(top).toEqual(expect.arrayContaining(['dev', 'etc', 'usr', 'var', 'tmp']));
    expect(top).not.toContain('root');
    expect(top).not.toContain('home');
    expect(fs.readdirSync(`/proc/${qemuPid}/root/dev`).sort()).toEqual(['null', 'urandom', 'zero']);
    // Its one network namespace has nothing but loopback.
    const ifaces = fs.readFileSync(`/proc/${qemuPid}/net/dev`, 'utf8').trim().split('\n').slice(2).map((l) => l.trim().split(':')[0]);
    expect(ifaces).toEqual(['lo']);
  });

  it('puts QEMU in its own memory and pids cgroups, limited to guest RAM plus the VMM overhead', () => {
    const mem = cgroupDirs.find((d) => d.includes('/memory/'));
    const pids = cgroupDirs.find((d) => d.includes('/pids/'));
    expect(mem).toMatch(new RegExp(`/vrun/vm-${jailId}$`));
    expect(pids).toMatch(new RegExp(`/vrun/vm-${jailId}$`));
    const limit = Number(fs.readFileSync(path.join(mem ?? '', 'memory.limit_in_bytes'), 'utf8'));
    expect(limit).toBeGreaterThan(512 * 1024 * 1024);
    expect(fs.readFileSync(path.join(pids ?? '', 'pids.max'), 'utf8').trim()).toBe(String(pidsMax(2)));
    expect(lines.join('')).toMatch(/cgroup controllers applied: memory, pids, cpu/);
    // What the sizing rests on, printed for the record.
    const threads = Number(statusField(qemuPid, 'Threads'));
    const peak = Number(fs.readFileSync(path.join(mem ?? '', 'memory.max_usage_in_bytes'), 'utf8'));
    console.log(`jailed QEMU after boot: ${threads} threads, VmRSS ${statusField(qemuPid, 'VmRSS')}, cgroup peak ${Math.round(peak / 2 ** 20)} MiB`);
  });

  it('hands QEMU its run directory and sockets, and the guest agent answers through the jail', async () => {
    expect(fs.statSync(runDir).uid).toBe(jailId);
    expect(fs.statSync(path.join(runDir, 'agent.sock')).uid).toBe(jailId);
    expect(fs.statSync(fsd.socketPath).uid).toBe(jailId);
    const client = await AgentClient.connect(path.join(runDir, 'agent.sock'), { timeoutMs: 240_000 });
    try {
      const details = await client.guestDetails();
      expect(details.kernelRelease).toMatch(/^6\.1\./);
    } finally {
      client.close();
    }
  });

  it('runs virtiofsd (once the guest is connected) as a non-root host uid in a user namespace, in its own namespaces, under its seccomp filter', () => {
    // The jailer (fsd.pid) runs virtiofsd as pid 1 of a new pid namespace; once the VMM connects, virtiofsd
    // sandboxes itself: a child in new mount, pid and net namespaces does the serving while it waits for it.
    const monitors = childrenOf(fsd.pid ?? 0);
    expect(monitors).toHaveLength(1);
    const monitor = monitors[0] ?? 0;
    const servers = childrenOf(monitor);
    expect(servers).toHaveLength(1);
    const server = servers[0] ?? 0;
    expect(fsd.hostUid).toBeGreaterThanOrEqual(USERNS_RANGE_BASE);
    for (const pid of [monitor, server]) {
      expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]).toBe('/usr/lib/qemu/virtiofsd');
      for (const field of ['Uid', 'Gid']) expect(statusField(pid, field).split(/\s+/).map(Number), field).toEqual(Array(4).fill(fsd.hostUid));
      expect(statusField(pid, 'NoNewPrivs')).toBe('1');
      // Its user namespace maps its ids to the pod's range and nothing to host root: whatever capabilities it
      // has are in that namespace, none in the host's.
      expect(fs.readlinkSync(`/proc/${pid}/ns/user`)).not.toBe(fs.readlinkSync('/proc/self/ns/user'));
      for (const map of ['uid_map', 'gid_map']) {
        expect(fs.readFileSync(`/proc/${pid}/${map}`, 'utf8').trim().split(/\s+/).map(Number), map).toEqual([0, fsd.hostUid, USERNS_RANGE_SIZE]);
      }
    }
    // The waiting process holds no capability at all, even in its namespace.
    expect(statusField(monitor, 'CapEff')).toBe('0000000000000000');
    for (const ns of ['mnt', 'pid', 'net']) {
      expect(fs.readlinkSync(`/proc/${server}/ns/${ns}`), ns).not.toBe(fs.readlinkSync(`/proc/self/ns/${ns}`));
      expect(fs.readlinkSync(`/proc/${server}/ns/${ns}`), ns).not.toBe(fs.readlinkSync(`/proc/${fsd.pid}/ns/${ns}`));
    }
    expect(statusField(server, 'Seccomp')).toBe('2');
    const capEff = BigInt(`0x${statusField(server, 'CapEff')}`);
    const CAP_MKNOD = 27n;
    const CAP_SETFCAP = 31n;
    const CAP_SYS_ADMIN = 21n;
    expect(capEff & (1n << CAP_MKNOD)).toBe(0n);
    expect(capEff & (1n << CAP_SETFCAP)).toBe(0n);
    expect(capEff & (1n << CAP_SYS_ADMIN)).toBe(0n);
    console.log(`virtiofsd server: Uid ${statusField(server, 'Uid')}, CapEff (in its user namespace) ${statusField(server, 'CapEff')}, Seccomp ${statusField(server, 'Seccomp')}`);
  });

  it('on kill, takes QEMU down and removes its cgroups, jail root and id reservation', async () => {
    const jailer = vm.pid ?? 0;
    await vm.kill();
    const exit = await vm.exited;
    expect(exit).toMatchObject({ kind: 'killed', signal: 'SIGKILL', message: 'QEMU killed by SIGKILL' });
    expect(isAlive(jailer)).toBe(false);
    expect(isAlive(qemuPid)).toBe(false);
    for (const dir of cgroupDirs) expect(fs.existsSync(dir), dir).toBe(false);
    expect(fs.existsSync(`${runDir}.jail`)).toBe(false);
    expect(isJailIdReserved(jailId)).toBe(false);
  });
});
