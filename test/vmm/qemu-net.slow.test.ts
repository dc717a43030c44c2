/**
 * The pod network under a jailed QEMU (TCG), through the backend the sandbox uses (launchQemu): the real guest
 * image boots with a virtio-net NIC on a tap made by src/network/tap.ts, and must see the pod interface's MAC
 * and MTU and reach the other end of the pod's veth, while QEMU stays confined and runs in the pod namespace.
 *
 * Safety: everything network runs in two namespaces this file makes: `pod` (the pod's, with the "CNI" veth end
 * and the tap) and `peer` (the other veth end, standing in for the host side of a CNI bridge). Neither has a
 * link off this machine; every packet goes between them and the guest. afterAll removes both.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureGuestImage, loadGuestImage } from '../../src/guest-image/image.js';
import { BASE_CMDLINE, READY_PATTERN } from '../../src/guest-image/guest-contract.js';
import { run, runChecked } from '../../src/network/exec.js';
import { createNetns, deleteNetns, netnsName } from '../../src/network/netns.js';
import { attachTap, redirectedPackets, type PodNic } from '../../src/network/tap.js';
import { isAlive } from '../../src/sandbox/cleanup.js';
import type { RunningVm } from '../../src/vmm/backend.js';
import { isJailIdReserved } from '../../src/vmm/jail/ids.js';
import { launchQemu } from '../../src/vmm/qemu/backend.js';
import { statusField } from './helpers/proc-status.js';

const podId = `test-qnet-${process.pid}`;
const peerId = `test-qnet-peer-${process.pid}`;
const POD_MAC = '02:13:00:00:00:02';
const MTU = 1400;
const PEER_IP = '10.213.0.1';
const GUEST_IP = '10.213.0.2';

/** Runs in the guest instead of the agent; spaces go as %20 (guest-image/vrun-init). It then stays up for the checks. */
const GUEST_CMD = [
  'echo VRUN-NET mac=$(cat /sys/class/net/eth0/address) mtu=$(cat /sys/class/net/eth0/mtu)',
  `ip addr add ${GUEST_IP}/24 dev eth0`,
  'ip link set eth0 up',
  `if ping -c 3 -w 60 ${PEER_IP}; then echo VRUN-NET ping=ok; else echo VRUN-NET ping=failed; fi`,
  'sleep 600',
].join('; ');

describe('QEMU with a pod network (TCG)', () => {
  let work: string;
  let podNs = '';
  let peerNs = '';
  let nic: PodNic;
  let vm: RunningVm | undefined;
  let qemuPid = 0;
  let jailId = 0;
  let facts = '';
  let ping = '';
  const lines: string[] = [];

  beforeAll(async () => {
    await ensureGuestImage();
    const image = await loadGuestImage('guest-image');
    podNs = await createNetns(podId);
    peerNs = await createNetns(peerId);
    // Made inside the peer namespace, one end moved straight into the pod's: neither ever is in the host's.
    await runChecked(['ip', 'link', 'add', 'vpeer', 'mtu', String(MTU), 'type', 'veth', 'peer', 'name', 'veth0', 'mtu', String(MTU), 'address', POD_MAC, 'netns', netnsName(podId)], {
      netns: peerNs,
    });
    await runChecked(['ip', 'addr', 'add', `${PEER_IP}/24`, 'dev', 'vpeer'], { netns: peerNs });
    await runChecked(['ip', 'link', 'set', 'vpeer', 'up'], { netns: peerNs });
    // What a CNI plugin leaves in the pod namespace: the veth up, with the pod's address.
    await runChecked(['ip', 'addr', 'add', `${GUEST_IP}/24`, 'dev', 'veth0'], { netns: podNs });
    await runChecked(['ip', 'link', 'set', 'veth0', 'up'], { netns: podNs });
    // No owner: the jailer opens the tap as root and hands QEMU the fd.
    nic = await attachTap(podNs, 'veth0');

    work = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-qemu-net-'));
    const runDir = path.join(work, 'vm');
    fs.mkdirSync(runDir, { mode: 0o700 });
    const logger = (await import('pino')).default({ level: 'info' }, { write: (l: string) => void lines.push(l) });
    vm = launchQemu(
      { backend: 'qemu', accel: 'tcg' },
      {
        kernel: image.kernel,
        initrd: image.initrd,
        cmdline: `${BASE_CMDLINE} quiet vrun.cmd=${GUEST_CMD.replace(/ /g, '%20')}`,
        vcpus: 1,
        memoryMiB: 256,
        runDir,
        agentSocket: path.join(runDir, 'agent.sock'),
        shares: [],
        consoleLog: path.join(work, 'console.log'),
        nets: [{ netns: podNs, tap: nic.tap, mac: nic.mac, mtu: nic.mtu }],
      },
      logger,
    );
    // All waiters at once: the console only matches lines printed after a waiter is set.
    const [, factsLine, pingLine] = await Promise.all([
      vm.console.waitFor(READY_PATTERN, 240_000, 'VRUN-READY'),
      vm.console.waitFor(/VRUN-NET mac=\S+ mtu=\S+/, 360_000, 'the guest NIC facts'),
      vm.console.waitFor(/VRUN-NET ping=\w+/, 540_000, 'the guest ping'),
    ]);
    facts = factsLine[0];
    ping = pingLine[0];
    qemuPid = vm.vmmPid?.() ?? 0;
    jailId = lines.map((l) => JSON.parse(l) as { jailId?: number }).find((l) => l.jailId !== undefined)?.jailId ?? 0;
  });

  afterAll(async () => {
    await vm?.kill().catch(() => undefined);
    await deleteNetns(podId).catch(() => undefined);
    await deleteNetns(peerId).catch(() => undefined);
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('gives the guest an eth0 with the pod interface MAC and MTU', () => {
    expect(nic).toMatchObject({ mac: POD_MAC, mtu: MTU, tap: 'tap_veth0' });
    expect(facts).toBe(`VRUN-NET mac=${POD_MAC} mtu=${MTU}`);
    const cmdline = fs.readFileSync(`/proc/${qemuPid}/cmdline`, 'utf8').split('\0');
    expect(cmdline).toContain('tap,id=net0,fd=3,vhost=off');
    expect(cmdline).toContain(`virtio-net-device,netdev=net0,mac=${POD_MAC},host_mtu=${MTU}`);
  });

  it('carries the guest traffic both ways between the guest and the far end of the pod veth', async () => {
    expect(ping).toBe('VRUN-NET ping=ok');
    // busybox's ping: the guest image's builder needs busybox-static on the host anyway, iputils is not a dependency.
    const fromPeer = await run(['/bin/busybox', 'ping', '-c', '2', '-w', '60', GUEST_IP], { netns: peerNs, timeoutMs: 90_000 });
    expect(fromPeer.code, fromPeer.stdout + fromPeer.stderr).toBe(0);
    // The frames went through the tc redirects, not some other path.
    expect(await redirectedPackets(podNs, 'veth0')).toBeGreaterThan(0);
    expect(await redirectedPackets(podNs, nic.tap)).toBeGreaterThan(0);
  });

  it('runs QEMU confined, in the pod network namespace, holding only its tap', () => {
    expect(qemuPid).toBeGreaterThan(0);
    expect(jailId).toBeGreaterThanOrEqual(0x6b000000);
    expect(statusField(qemuPid, 'Uid').split(/\s+/).map(Number)).toEqual([jailId, jailId, jailId, jailId]);
    expect(statusField(qemuPid, 'Seccomp')).toBe('2');
    expect(statusField(qemuPid, 'NoNewPrivs')).toBe('1');
    expect(statusField(qemuPid, 'CapEff')).toBe('0000000000000000');
    expect(statusField(qemuPid, 'NSpid').split(/\s+/)).toEqual([String(qemuPid), '1']);
    for (const ns of ['mnt', 'pid', 'ipc', 'uts']) {
      expect(fs.readlinkSync(`/proc/${qemuPid}/ns/${ns}`), ns).not.toBe(fs.readlinkSync(`/proc/self/ns/${ns}`));
    }
    expect(fs.readlinkSync(`/proc/${qemuPid}/ns/net`)).toBe(`net:[${fs.statSync(podNs).ino}]`);
    // No /dev/net/tun: the tap came as an fd.
    expect(fs.readdirSync(`/proc/${qemuPid}/root/dev`).sort()).toEqual(['null', 'urandom', 'zero']);
    expect(fs.readFileSync(`/proc/${qemuPid}/fdinfo/3`, 'utf8')).toMatch(/^iff:\s+tap_veth0$/m);
    expect(lines.join('')).toContain(`"netns":"${podNs}"`);
  });

  it('on kill, releases the jail and leaves the tap for the network teardown', async () => {
    const jailer = vm?.pid ?? 0;
    await vm?.kill();
    expect((await vm?.exited)?.kind).toBe('killed');
    expect(isAlive(jailer)).toBe(false);
    expect(isAlive(qemuPid)).toBe(false);
    expect(isJailIdReserved(jailId)).toBe(false);
    // Persistent: the tap outlives its VMM until src/network removes it, so a restarted VMM finds it.
    const tap = await run(['ip', '-o', 'link', 'show', 'dev', nic.tap], { netns: podNs });
    expect(tap.code).toBe(0);
  });
});
