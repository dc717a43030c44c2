import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS } from '../../src/vmm/virtio/devices/net-hdr.js';
import { NativeTap, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 } from '../../src/vmm/virtio/devices/net-tap.js';
import { createVm } from '../../src/vmm/machine.js';
import { VIRTIO_F_VERSION_1 } from '../../src/vmm/virtio/mmio.js';
import { buildElf } from './helpers/elf-builder.js';
import { arpReplySender, arpRequest, DATA, echoReply, icmpEcho, ipBytes, macBytes, netRig, type NetRig } from './helpers/net-rig.js';

/**
 * virtio-net on a real tap. The tap lives in a network namespace this file creates (`ip netns add`) and
 * deletes; the test process stays in its own namespace and opens the tap through the addon's netns path
 * (tapOpen enters the namespace on a thread of its own for the open; the fd keeps the tap's namespace), so
 * Node's loop watches the tap directly. Every frame goes to the tap's own address inside that namespace:
 * the kernel there answers ARP and ICMP echo, and the answers come back through the device's receive queue.
 */

const NS = `vrun-nettest-${process.pid}`;
const NS_PATH = `/run/netns/${NS}`;
const TAP = 'vnt0';
const HOST_IP = ipBytes('10.213.0.1');
const GUEST_IP = ipBytes('10.213.0.2');
const GUEST_MAC = '52:54:00:21:30:02';
const BASE = [VIRTIO_F_VERSION_1, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS].reduce((f, x) => f | (1n << x), 0n);

const ip = (...args: string[]) => execFileSync('ip', ['-n', NS, ...args], { encoding: 'utf8' });
const inNs = (...argv: string[]) => execFileSync('ip', ['netns', 'exec', NS, ...argv], { encoding: 'utf8' });
const tapCounter = (name: string) => Number(inNs('cat', `/sys/class/net/${TAP}/statistics/${name}`).trim());

async function until<T>(what: string, f: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('virtio-net over a real tap in a test network namespace', () => {
  let open: { tap: NativeTap; rig: NetRig } | undefined;

  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', NS]);
    // No IPv6 in there: the namespace's stack would otherwise send router solicitations and MLD reports.
    inNs('sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1');
    ip('tuntap', 'add', 'dev', TAP, 'mode', 'tap', 'vnet_hdr');
    ip('addr', 'add', '10.213.0.1/24', 'dev', TAP);
    ip('link', 'set', TAP, 'mtu', '1500', 'up');
    // A fixed neighbour for the "guest": the kernel never ARPs for it, so the only frames it sends are answers.
    ip('neigh', 'replace', '10.213.0.2', 'lladdr', GUEST_MAC, 'dev', TAP, 'nud', 'permanent');
  });

  afterEach(() => {
    open?.rig.dev.close();
    open = undefined;
  });

  afterAll(() => {
    execFileSync('ip', ['netns', 'del', NS]);
  });

  function up(features = BASE): NetRig {
    const tap = NativeTap.open(TAP, { netns: NS_PATH });
    const rig = netRig(tap, features, { mac: GUEST_MAC, mtu: 1500 });
    open = { tap, rig };
    return rig;
  }

  /** The frames received since the last call, once `want` says enough came. */
  async function receive(rig: NetRig, what: string, want: (frames: Buffer[]) => boolean): Promise<Buffer[]> {
    const frames: Buffer[] = [];
    return until(what, () => {
      frames.push(...rig.received().map((g) => g.frame));
      return want(frames) ? frames : undefined;
    });
  }

  /** ARP for the tap's address: its MAC, and the kernel learns ours (so its echo replies need no ARP of their own). */
  async function resolve(rig: NetRig): Promise<Buffer> {
    rig.send(arpRequest(macBytes(GUEST_MAC), GUEST_IP, HOST_IP));
    const frames = await receive(rig, 'the ARP reply', (fs) => fs.some((f) => arpReplySender(f)));
    return arpReplySender(frames.find((f) => arpReplySender(f))!)!;
  }

  it('attaches only to an existing persistent tap, once, and reports what offloads it took', () => {
    const tap = NativeTap.open(TAP, { netns: NS_PATH });
    try {
      expect(tap.offloads).toBe(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
      expect(() => NativeTap.open(TAP, { netns: NS_PATH })).toThrow(expect.objectContaining({ code: 'EBUSY', syscall: 'TUNSETIFF' }));
    } finally {
      tap.close();
    }
    expect(() => NativeTap.open('vnt-none', { netns: NS_PATH })).toThrow(expect.objectContaining({ code: 'ENODEV', path: 'vnt-none' }));
    expect(() => NativeTap.open(TAP, { netns: '/run/netns/vrun-no-such-ns' })).toThrow(expect.objectContaining({ code: 'ENOENT', path: '/run/netns/vrun-no-such-ns' }));
    expect(() => NativeTap.open('bad/name')).toThrow(/not an interface name/);
    // Nothing was created along the way, here or there.
    expect(ip('-o', 'link', 'show').match(/vnt-none/)).toBeNull();
    expect(execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).match(/vnt/)).toBeNull();
  });

  it('sends an ARP request and an ICMP echo out of the tap and receives the kernel answers', async () => {
    const rig = up();
    rig.post(8);
    const before = tapCounter('rx_packets');
    const hostMac = await resolve(rig);
    expect(hostMac.equals(macBytes(ip('-o', 'link', 'show', TAP).match(/link\/ether ([0-9a-f:]+)/)![1]!))).toBe(true);
    const payload = randomBytes(56);
    rig.send(icmpEcho(hostMac, macBytes(GUEST_MAC), GUEST_IP, HOST_IP, 0x4242, 1, payload));
    const frames = await receive(rig, 'the echo reply', (fs) => fs.some((f) => echoReply(f)));
    const reply = echoReply(frames.find((f) => echoReply(f))!)!;
    expect(reply).toMatchObject({ id: 0x4242, seq: 1 });
    expect(reply.payload.equals(payload)).toBe(true);
    // The kernel counted our two frames as the tap's received packets.
    expect(tapCounter('rx_packets') - before).toBe(2);
    expect(rig.dev.stats).toMatchObject({ txFrames: 2, rxTooSmall: 0, rxInvalid: 0, txInvalid: 0 });
    expect(rig.dev.stats.rxFrames).toBeGreaterThanOrEqual(2);
    expect(rig.irqs()).toBeGreaterThan(0);
  });

  it('with checksum offload negotiated, the kernel still answers and the tap takes only what the guest took', async () => {
    const rig = up(BASE | (1n << VIRTIO_NET_F_CSUM) | (1n << VIRTIO_NET_F_GUEST_CSUM));
    rig.post(8);
    const hostMac = await resolve(rig);
    rig.send(icmpEcho(hostMac, macBytes(GUEST_MAC), GUEST_IP, HOST_IP, 7, 9, Buffer.from('offload')));
    const frames = await receive(rig, 'the echo reply', (fs) => fs.some((f) => echoReply(f)));
    expect(echoReply(frames.find((f) => echoReply(f))!)).toMatchObject({ id: 7, seq: 9 });
    expect(rig.dev.stats.rxInvalid).toBe(0);
  });

  it('reads nothing while the guest has no receive buffers, and loses nothing the kernel queued', async () => {
    const rig = up();
    rig.post(2);
    const hostMac = await resolve(rig);
    await new Promise((r) => setTimeout(r, 50));
    rig.received();
    expect(rig.dev.debugState()).toMatchObject({ watchingTap: true });
    // Use up the posted buffers' remainder: none left, so the device must stop reading.
    const payload = Buffer.from('backpressure');
    for (let seq = 1; seq <= 6; seq++) rig.send(icmpEcho(hostMac, macBytes(GUEST_MAC), GUEST_IP, HOST_IP, 0x77, seq, payload));
    await until('the device to stop reading', () => (rig.dev.debugState().watchingTap === false ? true : undefined));
    const early = rig.received().map((g) => echoReply(g.frame)).filter((r) => r !== undefined);
    const readSoFar = rig.dev.stats.rxFrames;
    await new Promise((r) => setTimeout(r, 200));
    expect(rig.dev.stats.rxFrames).toBe(readSoFar);
    rig.post(8);
    const frames = await receive(rig, 'the queued echo replies', (fs) => early.length + fs.filter((f) => echoReply(f)).length >= 6);
    const seqs = [...early, ...frames.map(echoReply).filter((r) => r !== undefined)].map((r) => r.seq);
    expect(seqs.sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(rig.dev.stats).toMatchObject({ rxTooSmall: 0, rxInvalid: 0, rxErrors: 0 });
  });

  it('drops an oversized transmit chain and hands back a receive chain too small for the frame', async () => {
    const rig = up();
    // One chain, for the ARP reply: afterwards the guest has none posted.
    rig.post(1);
    const hostMac = await resolve(rig);
    const before = tapCounter('rx_packets');
    rig.txq.addChain([{ addr: DATA, len: 0x8000 }, { addr: DATA + 0x8000, len: 0x8000 }, { addr: DATA + 0x10000, len: 0x100 }]);
    rig.notify(1);
    expect(rig.dev.stats.txOversized).toBe(1);
    expect(rig.txq.takeUsed().pop()).toMatchObject({ len: 0 });
    expect(tapCounter('rx_packets')).toBe(before);

    const ping = (seq: number) => rig.send(icmpEcho(hostMac, macBytes(GUEST_MAC), GUEST_IP, HOST_IP, 0x99, seq, Buffer.alloc(64, seq)));
    rig.post(1, 40);
    rig.post(1, 2048);
    ping(5);
    ping(6);
    const got: { len: number; frame: Buffer }[] = [];
    await until('both chains back', () => {
      got.push(...rig.received());
      return got.length >= 2 ? true : undefined;
    });
    expect(got[0]!.len).toBe(0);
    expect(echoReply(got[1]!.frame)).toMatchObject({ seq: 6 });
    expect(rig.dev.stats.rxTooSmall).toBe(1);
    expect(rig.mmio.deviceStatus & 0x40).toBe(0);
  });

  it('machine: opens each NIC tap before any VM, and releases it whatever fails after', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-net-machine-'));
    const kernel = path.join(dir, 'vmlinux');
    fs.writeFileSync(kernel, buildElf({ entry: 0x200000, segments: [{ paddr: 0x200000, data: Buffer.alloc(64, 0x90) }] }));
    const base = { kernel, vcpus: 1, memoryMiB: 128 };
    const net = { tapName: TAP, mac: GUEST_MAC, netns: NS_PATH };
    const fds = fs.readdirSync('/proc/self/fd').length;
    try {
      await expect(createVm({ ...base, nets: [{ ...net, tapName: 'vnt-none' }] })).rejects.toThrow(/cannot set up the VM: ENODEV: .*'vnt-none'/);
      await expect(createVm({ ...base, nets: [{ ...net, mac: '01:00:5e:00:00:01' }] })).rejects.toThrow(/multicast or zero/);
      await expect(createVm({ ...base, nets: [net, net] })).rejects.toThrow(/EBUSY: .*TUNSETIFF 'vnt0'/);
      // Without a usable /dev/kvm (this host) the VM itself fails after the tap was opened; with one it runs.
      await createVm({ ...base, nets: [net] }).then((m) => m.destroy(), () => undefined);
      // Each time the tap was closed again: it can be attached to.
      NativeTap.open(TAP, { netns: NS_PATH }).close();
      expect(fs.readdirSync('/proc/self/fd').length).toBe(fds);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
