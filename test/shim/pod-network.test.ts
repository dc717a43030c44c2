/**
 * The shim's side of a CRI pod's network, without a VM: taps next to the interfaces CNI made, the record a
 * `delete` after a shim crash works from, and the release in both paths.
 *
 * Safety: a veth between two namespaces this file makes ("pod" and "peer", the latter standing in for CNI's
 * bridge side); nothing is created in the host's namespace and no packet is sent.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, runChecked } from '../../src/network/exec.js';
import { createNetns, deleteNetns, netnsName } from '../../src/network/netns.js';
import { PodNetwork, readNetworkRecord, releaseRecordedNetwork } from '../../src/shim/pod-network.js';
import { PortForwarder } from '../../src/shim/port-forward.js';

const podId = `test-shimnet-${process.pid}`;
const peerId = `test-shimnet-peer-${process.pid}`;
const loOnlyId = `test-shimnet-lo-${process.pid}`;
const MAC = '02:14:00:00:00:02';
const log = pino({ level: 'silent' });

/** The pod namespace's links (name → kind) and what tc filters the veth has. */
async function state(netns: string): Promise<{ links: Record<string, string>; vethFilters: string; natRules: string }> {
  const links = JSON.parse(await runChecked(['ip', '-j', '-d', 'link', 'show'], { netns })) as { ifname: string; linkinfo?: { info_kind?: string } }[];
  const filters = await run(['tc', 'filter', 'show', 'dev', 'eth0', 'parent', 'ffff:'], { netns });
  const nat = await runChecked(['iptables-save', '-t', 'nat'], { netns });
  // iptables-save's comment lines carry the time.
  return { links: Object.fromEntries(links.map((l) => [l.ifname, l.linkinfo?.info_kind ?? ''])), vethFilters: filters.stdout, natRules: nat.replace(/^#.*\n/gm, '') };
}

describe('the shim\'s pod network', () => {
  let podNs = '';
  let peerNs = '';
  let dir = '';

  beforeAll(async () => {
    podNs = await createNetns(podId);
    peerNs = await createNetns(peerId);
    // What containerd's bridge CNI leaves: a veth in the pod namespace, up, with the pod's address.
    await runChecked(['ip', 'link', 'add', 'vpeer', 'type', 'veth', 'peer', 'name', 'eth0', 'address', MAC, 'netns', netnsName(podId)], { netns: peerNs });
    await runChecked(['ip', 'addr', 'add', '10.214.0.2/24', 'dev', 'eth0'], { netns: podNs });
    await runChecked(['ip', 'link', 'set', 'eth0', 'up'], { netns: podNs });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-shimnet-'));
  });
  afterAll(async () => {
    for (const id of [podId, peerId, loOnlyId]) await deleteNetns(id).catch(() => undefined);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('puts a tap next to each CNI interface, records it, and takes it all away on release', async () => {
    const before = await state(podNs);
    const record = path.join(dir, 'network.json');
    const net = await PodNetwork.attach(podNs, record, log);
    expect(net.nics.map((n) => ({ veth: n.veth, tap: n.tap, mac: n.mac }))).toEqual([{ veth: 'eth0', tap: 'tap_eth0', mac: MAC }]);
    expect(net.vmNets).toEqual([{ netns: podNs, tap: 'tap_eth0', mac: MAC, mtu: 1500 }]);
    expect(net.nics[0]?.addresses.map((a) => `${a.address}/${a.prefixLength}`)).toEqual(['10.214.0.2/24']);
    const during = await state(podNs);
    expect(during.links.tap_eth0).toBe('tun');
    expect(during.vethFilters).toContain('mirred');
    expect(JSON.parse(fs.readFileSync(record, 'utf8'))).toEqual({ netns: podNs, nics: [{ veth: 'eth0', tap: 'tap_eth0' }] });
    expect(await readNetworkRecord(record)).toEqual({ netns: podNs, nics: [{ veth: 'eth0', tap: 'tap_eth0' }] });

    await net.release();
    await net.release();
    expect(await state(podNs)).toEqual(before);
    expect(fs.existsSync(record)).toBe(false);
  });

  it('releases what a dead shim recorded: taps and the port-forward rule', async () => {
    const before = await state(podNs);
    const record = path.join(dir, 'crashed.json');
    const net = await PodNetwork.attach(podNs, record, log);
    expect(net.nics.map((n) => n.tap)).toEqual(['tap_eth0']);
    const fwd = await PortForwarder.start(podNs, { portForward: () => { throw new Error('not dialled in this test'); } }, log);
    fs.writeFileSync(record, JSON.stringify({ ...JSON.parse(fs.readFileSync(record, 'utf8')), forwardPort: fwd.port }));
    expect((await state(podNs)).natRules).toContain(`--to-ports ${fwd.port}`);

    // The shim died here: `delete` has only the record.
    await releaseRecordedNetwork(await readNetworkRecord(record), (o, msg) => {
      throw new Error(`${msg}: ${JSON.stringify(o)}`);
    });
    const after = await state(podNs);
    expect(after).toEqual(before);
    expect(after.natRules).not.toContain('vrun-port-forward');
    await fwd.stop();
  });

  it('ignores a malformed record instead of acting on it, and a namespace that is gone already', async () => {
    const bad = path.join(dir, 'bad.json');
    for (const text of ['{nope', JSON.stringify({ netns: 'relative', nics: [] }), JSON.stringify({ netns: podNs, nics: [{ veth: '../x', tap: 't' }] }), JSON.stringify({ netns: podNs, nics: [], forwardPort: 70000 })]) {
      fs.writeFileSync(bad, text);
      expect(await readNetworkRecord(bad), text).toBeUndefined();
    }
    expect(await readNetworkRecord(path.join(dir, 'missing.json'))).toBeUndefined();
    await releaseRecordedNetwork({ netns: '/run/netns/vrun-no-such-namespace', nics: [{ veth: 'eth0', tap: 'tap_eth0' }], forwardPort: 1234 }, (o, msg) => {
      throw new Error(`${msg}: ${JSON.stringify(o)}`);
    });
  });

  it('gives a pod with only loopback no NIC', async () => {
    const lo = await createNetns(loOnlyId);
    const net = await PodNetwork.attach(lo, path.join(dir, 'lo.json'), log);
    expect(net.nics).toEqual([]);
    expect(net.vmNets).toEqual([]);
    await net.release();
    expect(Object.keys((await state(lo)).links)).toEqual(['lo']);
  });
});
