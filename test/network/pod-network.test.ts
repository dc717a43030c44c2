/**
 * Pod networking on the host side, with the real CNI plugins, ip and tc. Safety: everything runs in
 * namespaces this file makes. The plugins run inside a "host" namespace of the test's own (CniEnv.runIn), so
 * the bridge, its iptables rules and ip_forward land there; it has no link off this machine, and every
 * packet the tests send goes between the test's namespaces. afterAll removes them even after a failure.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedResult, cniAdd, cniCheck, cniDel, loadNetworkFor, type Attachment, type CniEnv } from '../../src/network/cni.js';
import { parseConfList, type NetworkConfigList } from '../../src/network/cni-config.js';
import type { CniResult } from '../../src/network/cni-result.js';
import { run, runChecked } from '../../src/network/exec.js';
import { describeLeftovers, findLeftovers, isClean, teardownPodNetwork } from '../../src/network/leftovers.js';
import { createNetns, deleteNetns, isNetnsMounted, listVrunNetns, netnsPath } from '../../src/network/netns.js';
import { parsePortMappings, resolveHostPorts } from '../../src/network/ports.js';
import { attachTap, detachTap, redirectedPackets, waitForCarrier, type PodNic } from '../../src/network/tap.js';
import { tapGuest, tcpGet, tcpServer } from './ns-tools.js';

const tag = `t${process.pid}`;
const hostId = `test-host-${tag}`;
const podA = { sandbox: `test-pod-a-${tag}`, container: `ctr-a-${tag}` };
const podB = { sandbox: `test-pod-b-${tag}`, container: `ctr-b-${tag}` };
const badPod = { sandbox: `test-pod-bad-${tag}`, container: `ctr-bad-${tag}` };
const HOST_PORT = 18080;

let tmp: string;
/** The test's stand-in for the host's namespace: the plugins, the bridge and its rules live here. */
let hostNs = '';
let env: CniEnv;
let list: NetworkConfigList;
const results = new Map<string, CniResult>();

function attachment(p: { sandbox: string; container: string }, extra: Partial<Attachment> = {}): Attachment {
  return { containerId: p.container, netns: netnsPath(p.sandbox), ifname: 'eth0', ...extra };
}

function ipv4Of(r: CniResult | undefined): string {
  const ip = r?.ips.find((i) => i.family === 4)?.address;
  if (!ip) throw new Error('no IPv4 address in the CNI result');
  return ip;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-net-'));
  hostNs = await createNetns(hostId);
  env = {
    pluginDirs: ['/usr/lib/cni'],
    confDir: path.join(tmp, 'net.d'),
    cacheDir: path.join(tmp, 'cache'),
    runIn: hostNs,
    defaultNetwork: { dataDir: path.join(tmp, 'ipam') },
  };
  for (const p of [podA, podB, badPod]) await createNetns(p.sandbox);
});

afterAll(async () => {
  for (const p of [podA, podB, badPod]) {
    if (list) await cniDel(env, list, attachment(p)).catch(() => undefined);
    await deleteNetns(p.sandbox).catch(() => undefined);
  }
  await deleteNetns(hostId).catch(() => undefined);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('network namespaces', () => {
  it('are nsfs mounts under /run/netns that `ip netns` lists, with lo up', async () => {
    const file = netnsPath(podA.sandbox);
    expect(isNetnsMounted(file)).toBe(true);
    expect(listVrunNetns()).toEqual(expect.arrayContaining([podA.sandbox, podB.sandbox, hostId]));
    expect(await runChecked(['ip', 'netns', 'list'])).toContain(`vrun-${podA.sandbox}`);
    const lo = JSON.parse(await runChecked(['ip', '-j', 'link', 'show', 'lo'], { netns: file })) as { flags: string[] }[];
    expect(lo[0]?.flags).toContain('UP');
    await expect(createNetns(podA.sandbox)).rejects.toMatchObject({ kind: 'exists' });
  });
});

describe('the default network', () => {
  it('is written on first use: bridge vrun0 on 10.90.0.0/16 with portmap and firewall', () => {
    expect(fs.existsSync(path.join(env.confDir, '10-vrun.conflist'))).toBe(false);
    list = loadNetworkFor(env, 'vrun');
    const written = parseConfList(fs.readFileSync(path.join(env.confDir, '10-vrun.conflist'), 'utf8'), 'test');
    expect(written).toEqual(list);
    expect(list.plugins.map((p) => p.type)).toEqual(['bridge', 'portmap', 'firewall']);
    expect(list.plugins[0]).toMatchObject({ bridge: 'vrun0', isGateway: true, ipMasq: true, ipam: { ranges: [[{ subnet: '10.90.0.0/16' }]] } });
    expect(loadNetworkFor(env, 'vrun')).toEqual(list);
  });

  it('ADD gives two pods an address each on vrun0, with a port mapping on the second', async () => {
    const [mapping] = parsePortMappings([`${HOST_PORT}:8080`]);
    const t0 = performance.now();
    results.set(podA.sandbox, await cniAdd(env, list, attachment(podA)));
    results.set(podB.sandbox, await cniAdd(env, list, attachment(podB, { portMappings: mapping ? [mapping] : [] })));
    console.log(`two CNI ADDs (bridge+portmap+firewall): ${Math.round(performance.now() - t0)} ms`);
    for (const [sandbox, r] of results) {
      const ip = r.ips.find((i) => i.family === 4);
      expect(ip).toMatchObject({ prefixLength: 16, gateway: '10.90.0.1' });
      expect(ip?.address).toMatch(/^10\.90\.\d+\.\d+$/);
      expect(r.interfaces.find((i) => i.sandbox === netnsPath(sandbox))?.name).toBe('eth0');
      expect(r.interfaces.some((i) => i.name === 'vrun0' && !i.sandbox)).toBe(true);
    }
    expect(ipv4Of(results.get(podA.sandbox))).not.toBe(ipv4Of(results.get(podB.sandbox)));
    const bridge = JSON.parse(await runChecked(['ip', '-j', 'addr', 'show', 'dev', 'vrun0'], { netns: hostNs })) as { addr_info: { local: string }[] }[];
    expect(bridge[0]?.addr_info.map((a) => a.local)).toContain('10.90.0.1');
    // The bridge exists only in the test's host namespace.
    expect((await run(['ip', 'link', 'show', 'dev', 'vrun0'])).code).not.toBe(0);
    expect(cachedResult(env, 'vrun', attachment(podA))?.ips).toEqual(results.get(podA.sandbox)?.ips);
    await expect(cniAdd(env, list, attachment(podA))).rejects.toThrow(`network "vrun": container ${podA.container} is already attached as eth0 (DEL it first)`);
    await cniCheck(env, list, attachment(podA));
  });

  it('pods reach each other over TCP through the bridge', async () => {
    const server = await tcpServer(netnsPath(podB.sandbox), 8080, 'hello from b');
    try {
      expect(await tcpGet(netnsPath(podA.sandbox), ipv4Of(results.get(podB.sandbox)), 8080)).toBe('hello from b');
      // portmap: the host port on the bridge's address, from the host side and from the other pod.
      expect(await tcpGet(hostNs, '10.90.0.1', HOST_PORT)).toBe('hello from b');
      expect(await tcpGet(netnsPath(podA.sandbox), '10.90.0.1', HOST_PORT)).toBe('hello from b');
      // And on the host's own loopback: portmap sets route_localnet on the bridge and masquerades it.
      expect(await tcpGet(hostNs, '127.0.0.1', HOST_PORT)).toBe('hello from b');
    } finally {
      server.stop();
    }
  });

  it('tap + tc redirect: a stand-in guest on the tap answers ping with the veth MAC and IP', async () => {
    const file = netnsPath(podA.sandbox);
    const t0 = performance.now();
    const nic: PodNic = await attachTap(file, 'eth0');
    console.log(`attachTap: ${Math.round(performance.now() - t0)} ms, classifier ${nic.classifier}`);
    const ipA = ipv4Of(results.get(podA.sandbox));
    const link = JSON.parse(await runChecked(['ip', '-j', 'link', 'show', 'dev', 'eth0'], { netns: file })) as { address: string; mtu: number }[];
    expect(nic).toMatchObject({ veth: 'eth0', tap: 'tap_eth0', mac: link[0]?.address, mtu: link[0]?.mtu });
    expect(nic.addresses).toEqual([{ family: 4, address: ipA, prefixLength: 16 }]);
    expect(nic.routes).toEqual(expect.arrayContaining([expect.objectContaining({ family: 4, dst: '0.0.0.0/0', gateway: '10.90.0.1', dev: 'eth0' })]));
    const tapLink = JSON.parse(await runChecked(['ip', '-j', '-d', 'link', 'show', 'dev', 'tap_eth0'], { netns: file })) as { mtu: number; linkinfo: { info_data: Record<string, unknown> } }[];
    expect(tapLink[0]?.mtu).toBe(nic.mtu);
    expect(tapLink[0]?.linkinfo.info_data).toMatchObject({ type: 'tap', pi: false, vnet_hdr: true });

    expect(await waitForCarrier(file, nic.tap, 200)).toBe(false);
    const guest = await tapGuest(file, nic.tap, ipA, nic.mac, 5);
    expect(await waitForCarrier(file, nic.tap)).toBe(true);
    const ping = await run(['busybox', 'ping', '-c', '3', '-W', '2', ipA], { netns: netnsPath(podB.sandbox), timeoutMs: 15_000 });
    const counts = await guest.done;
    console.log(`tap guest: ${JSON.stringify(counts)}; ping: ${ping.stdout.split('\n').find((l) => l.includes('packets'))}`);
    expect(ping.code).toBe(0);
    expect(counts.icmp).toBeGreaterThanOrEqual(3);
    // With no address on the tap, everything the guest read came through the redirect from the veth (which
    // also counts what arrived while no guest was attached).
    expect(await redirectedPackets(file, 'eth0')).toBeGreaterThanOrEqual(counts.frames);
    expect(await redirectedPackets(file, nic.tap)).toBe(counts.arp + counts.icmp);
  });

  it('the leftovers lister sees a live pod, and nothing once it is torn down', async () => {
    const query = { sandboxId: podA.sandbox, containerId: podA.container, networks: [list], env };
    const before = await findLeftovers(query);
    console.log(`live pod A: ${describeLeftovers(before)}`);
    expect(before.netns).toEqual([netnsPath(podA.sandbox)]);
    expect(before.taps).toEqual([`${netnsPath(podA.sandbox)}:tap_eth0`]);
    expect(before.ipAllocations.map((f) => path.basename(f))).toEqual([ipv4Of(results.get(podA.sandbox))]);
    expect(before.cache).toHaveLength(1);
    expect(before.rules.length).toBeGreaterThan(0);

    await teardownPodNetwork(env, podA.sandbox, [{ list, attachment: attachment(podA), tap: 'tap_eth0' }]);
    const after = await findLeftovers(query);
    expect(describeLeftovers(after)).toBe('');
    expect(isClean(after)).toBe(true);
  });

  it('DEL releases the IP, the port mapping rules and the cache, and repeats cleanly', async () => {
    const query = { sandboxId: podB.sandbox, containerId: podB.container, networks: [list], env };
    const before = await findLeftovers(query);
    expect(before.rules.some((r) => r.includes(`${HOST_PORT}`))).toBe(true);
    await cniDel(env, list, attachment(podB));
    await cniDel(env, list, attachment(podB));
    const after = await findLeftovers(query);
    expect(after).toEqual({ netns: [netnsPath(podB.sandbox)], taps: [], ipAllocations: [], rules: [], cache: [] });
    const links = JSON.parse(await runChecked(['ip', '-j', 'link', 'show'], { netns: netnsPath(podB.sandbox) })) as { ifname: string }[];
    expect(links.map((l) => l.ifname)).toEqual(['lo']);
    await expect(tcpGet(hostNs, '10.90.0.1', HOST_PORT)).rejects.toThrow(/ECONNREFUSED/);
  });
});

describe('bad input', () => {
  const oneLine = (e: unknown): string => {
    const m = (e as Error).message;
    expect(m).not.toContain('\n');
    return m;
  };

  it('names a bad -p value', () => {
    expect(() => parsePortMappings(['99999:80'])).toThrow('-p 99999:80: host port 99999 is out of range (1-65535)');
    expect(() => parsePortMappings(['abc'])).toThrow('-p abc: container port "abc" is not a number');
    expect(() => parsePortMappings(['8080:80/sctp'])).toThrow('-p 8080:80/sctp: protocol sctp is not supported (tcp or udp)');
    expect(() => parsePortMappings(['1.2.3:80:80'])).toThrow('-p 1.2.3:80:80: host IP "1.2.3" is not an IP address');
    expect(() => parsePortMappings(['8000-8010:80'])).toThrow(/port ranges \(8000-8010\) are not supported/);
    expect(() => parsePortMappings(['8080:80', '8080:81'])).toThrow('-p 8080:81: host port 8080/tcp is also given by -p 8080:80');
    expect(parsePortMappings(['127.0.0.1:8080:80/udp', '[::1]:9090:90', '80', '0.0.0.0::81'])).toEqual([
      { hostIP: '127.0.0.1', hostPort: 8080, containerPort: 80, protocol: 'udp', spec: '127.0.0.1:8080:80/udp' },
      { hostIP: '::1', hostPort: 9090, containerPort: 90, protocol: 'tcp', spec: '[::1]:9090:90' },
      { hostIP: '', hostPort: 0, containerPort: 80, protocol: 'tcp', spec: '80' },
      { hostIP: '', hostPort: 0, containerPort: 81, protocol: 'tcp', spec: '0.0.0.0::81' },
    ]);
  });

  it('refuses a host port already taken, and picks one for -p CTRPORT', async () => {
    // Loopback of this process's namespace, bound and never connected to: no packet is sent.
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      await expect(resolveHostPorts(parsePortMappings([`127.0.0.1:${port}:80`]))).rejects.toThrow(`-p 127.0.0.1:${port}:80: host port ${port}/tcp on 127.0.0.1 is already in use`);
      const [picked] = await resolveHostPorts(parsePortMappings(['127.0.0.1::80']));
      expect(picked?.hostPort).toBeGreaterThan(0);
    } finally {
      busy.close();
    }
  });

  it('names an unknown network', () => {
    expect(() => loadNetworkFor(env, 'nope')).toThrow(`network "nope" not found in ${env.confDir} (known: vrun)`);
  });

  async function expectNothingLeft(l: NetworkConfigList, dataDir: string): Promise<void> {
    const left = await findLeftovers({ sandboxId: badPod.sandbox, containerId: badPod.container, networks: [l], env });
    expect(left.ipAllocations).toEqual([]);
    expect(left.rules).toEqual([]);
    expect(left.cache).toEqual([]);
    expect(fs.readdirSync(dataDir, { recursive: true }).filter((f) => /\d+\.\d+\.\d+\.\d+$/.test(String(f)))).toEqual([]);
    const links = JSON.parse(await runChecked(['ip', '-j', 'link', 'show'], { netns: netnsPath(badPod.sandbox) })) as { ifname: string }[];
    expect(links.map((x) => x.ifname)).toEqual(['lo']);
  }

  // A bridge whose first ADD failed keeps a zero MAC once its last port goes, and bridge 1.1.1 then fails every
  // later ADD on it ("could not set bridge's mac"), so each case gets a bridge of its own.
  function badList(bridge: string, second: Record<string, unknown>, subnet = '10.91.0.0/24'): { l: NetworkConfigList; dataDir: string } {
    const dataDir = path.join(tmp, 'ipam-bad');
    fs.mkdirSync(dataDir, { recursive: true });
    const l = parseConfList(
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'badnet',
        plugins: [{ type: 'bridge', bridge, isGateway: true, ipMasq: true, ipam: { type: 'host-local', dataDir, ranges: [[{ subnet }]] } }, second],
      }),
      'test',
    );
    return { l, dataDir };
  }

  it('a plugin that does not exist fails before anything is made', async () => {
    const { l, dataDir } = badList('vrunbad0', { type: 'no-such-plugin' });
    const err = await cniAdd(env, l, attachment(badPod)).catch((e: unknown) => e);
    expect(oneLine(err)).toBe('network "badnet": CNI plugin "no-such-plugin" not found in /usr/lib/cni');
    expect((await run(['ip', 'link', 'show', 'dev', 'vrunbad0'], { netns: hostNs })).code).not.toBe(0);
    await expectNothingLeft(l, dataDir);
  });

  it('a plugin given bad config fails with its own message', async () => {
    const { l, dataDir } = badList('vrunbad1', { type: 'portmap', capabilities: { portMappings: true } }, 'not-a-subnet');
    const err = await cniAdd(env, l, attachment(badPod)).catch((e: unknown) => e);
    expect(oneLine(err)).toMatch(/^network "badnet": CNI plugin "bridge" ADD failed: .*not-a-subnet/);
    await expectNothingLeft(l, dataDir);
  });

  it('a failure after an earlier plugin succeeded is rolled back by DEL', async () => {
    const { l, dataDir } = badList('vrunbad2', { type: 'tuning', sysctl: { 'net.ipv4.conf.eth0.no_such_knob': '1' } });
    const err = await cniAdd(env, l, attachment(badPod)).catch((e: unknown) => e);
    expect(oneLine(err)).toMatch(/^network "badnet": CNI plugin "tuning" ADD failed: .*no_such_knob/);
    await expectNothingLeft(l, dataDir);
  });

  it('tap teardown is idempotent and a tap on a missing link is refused', async () => {
    const file = netnsPath(badPod.sandbox);
    await expect(attachTap(file, 'eth9')).rejects.toThrow(/reading link eth9: .*eth9/);
    await detachTap(file, 'eth9', 'tap_eth9');
    // An ingress qdisc that was on the link before is left alone when attaching fails.
    await runChecked(['ip', 'link', 'add', 'eth9', 'type', 'veth', 'peer', 'name', 'eth9p'], { netns: file });
    await runChecked(['tc', 'qdisc', 'add', 'dev', 'eth9', 'ingress'], { netns: file });
    await expect(attachTap(file, 'eth9')).rejects.toThrow(/attaching tap tap_eth9 to eth9 in .*: EEXIST: .*, adding an ingress qdisc to eth9/);
    expect(await runChecked(['tc', 'qdisc', 'show', 'dev', 'eth9', 'ingress'], { netns: file })).toContain('ingress');
    await runChecked(['ip', 'link', 'del', 'eth9'], { netns: file });
    const links = JSON.parse(await runChecked(['ip', '-j', 'link', 'show'], { netns: file })) as { ifname: string }[];
    expect(links.map((x) => x.ifname)).toEqual(['lo']);
  });
});
