import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NetworkConfig } from '../../src/agent/host/client.js';
import { startHostAgent, type HostAgent } from '../../src/agent/host/host-process.js';
import { refusal } from './refusal.js';

/**
 * The agent runs inside a network namespace this test made (`ip netns add`), on a veth pair made there: every
 * link, address, route and neighbour below lives in that namespace, and the namespace goes with the test.
 * Nothing here touches the host's own network.
 */
const NS = `vrun-nettest-${process.pid}-${randomBytes(3).toString('hex')}`;
const MAC = '02:5a:00:00:00:0a';
const OTHER_MAC = '02:5a:00:00:00:0b';

function inNs(args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', NS, ...args], { encoding: 'utf8' });
}

function json<T>(args: string[]): T {
  return JSON.parse(inNs(['ip', '-j', ...args])) as T;
}

interface AddrInfo {
  ifname: string;
  mtu: number;
  flags: string[];
  address: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}
interface RouteInfo {
  dst: string;
  gateway?: string;
  dev: string;
  prefsrc?: string;
  metric?: number;
  scope?: string;
  protocol?: string;
  flags: string[];
}
interface NeighInfo {
  dst: string;
  dev: string;
  lladdr?: string;
  state: string[];
}

/**
 * What a request could change, without what the kernel changes on its own meanwhile: when IPv6 duplicate
 * address detection ends, an address loses "tentative" and gains a route in the local table.
 */
function state(): string {
  return JSON.stringify([
    json<AddrInfo[]>(['addr']).map((l) => [l.ifname, l.mtu, l.flags, l.addr_info.map((a) => `${a.local}/${a.prefixlen}`)]),
    json<RouteInfo[]>(['-4', 'route']),
    json<RouteInfo[]>(['-6', 'route']),
    json<NeighInfo[]>(['neigh']).map((n) => [n.dst, n.dev, n.lladdr]),
  ]);
}


/** Calico's pod network: a /32, the 169.254.1.1 gateway on-link through a /32 route and a permanent neighbour. */
const CALICO: NetworkConfig = {
  interfaces: [{ mac: MAC.toUpperCase(), name: 'eth0', mtu: 1450, addresses: ['10.244.1.5/32', 'fd00:10::5/64', 'fe80::abcd/64'] }],
  routes: [
    { destination: '0.0.0.0/0', gateway: '169.254.1.1', interfaceMac: MAC },
    { destination: '169.254.1.1/32', interfaceMac: MAC, scope: 'link' },
    { destination: '10.96.0.0/12', gateway: '169.254.1.1', interfaceMac: MAC, source: '10.244.1.5', metric: 5 },
    { destination: '::/0', gateway: 'fd00:10::1', interfaceMac: MAC },
    // The kernel's own connected route: skipped, not added twice.
    { destination: 'fd00:10::/64', interfaceMac: MAC },
  ],
  neighbors: [{ ip: '169.254.1.1', mac: 'ee:ee:ee:ee:ee:ee', interfaceMac: MAC }],
};

describe('agent on the host: ConfigureNetwork and SetHosts in a network namespace of the test', () => {
  let agent: HostAgent;

  beforeAll(async () => {
    execFileSync('ip', ['netns', 'add', NS]);
    inNs(['ip', 'link', 'add', 'v0', 'address', MAC, 'type', 'veth', 'peer', 'name', 'v1', 'address', OTHER_MAC]);
    inNs(['ip', 'link', 'set', 'v1', 'up']);
    agent = await startHostAgent({ wrapper: ['ip', 'netns', 'exec', NS] });
  });
  afterAll(async () => {
    await agent?.stop();
    execFileSync('ip', ['netns', 'del', NS]);
  });

  it('finds the link by MAC and sets its name, MTU, addresses, routes and permanent neighbour', async () => {
    expect(await agent.client.configureNetwork(CALICO)).toEqual([{ mac: MAC, name: 'eth0' }]);

    const [link] = json<AddrInfo[]>(['addr', 'show', 'dev', 'eth0']);
    expect(link?.address).toBe(MAC);
    expect(link?.mtu).toBe(1450);
    expect(link?.flags).toContain('UP');
    const addrs = (link?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
    expect(addrs).toEqual(expect.arrayContaining(['10.244.1.5/32', 'fd00:10::5/64']));
    expect(addrs).not.toContain('fe80::abcd/64');

    const routes = json<RouteInfo[]>(['-4', 'route', 'show', 'dev', 'eth0']);
    expect(routes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ dst: '169.254.1.1', scope: 'link' }),
        expect.objectContaining({ dst: 'default', gateway: '169.254.1.1' }),
        expect.objectContaining({ dst: '10.96.0.0/12', gateway: '169.254.1.1', prefsrc: '10.244.1.5', metric: 5 }),
      ]),
    );
    const routes6 = json<RouteInfo[]>(['-6', 'route', 'show', 'dev', 'eth0']);
    expect(routes6).toEqual(expect.arrayContaining([expect.objectContaining({ dst: 'default', gateway: 'fd00:10::1' })]));
    // Only the kernel's own route to the /64: the request's copy was skipped.
    expect(routes6.filter((r) => r.dst === 'fd00:10::/64')).toEqual([expect.objectContaining({ protocol: 'kernel' })]);

    const neigh = json<NeighInfo[]>(['neigh', 'show', 'dev', 'eth0']);
    expect(neigh).toEqual([expect.objectContaining({ dst: '169.254.1.1', lladdr: 'ee:ee:ee:ee:ee:ee', state: ['PERMANENT'] })]);
  });

  it('converges when called again', async () => {
    const before = state();
    expect(await agent.client.configureNetwork(CALICO)).toEqual([{ mac: MAC, name: 'eth0' }]);
    expect(state()).toBe(before);
  });

  it('refuses bad and unknown input before changing anything', async () => {
    const before = state();
    const iface = { mac: MAC, name: 'eth0', addresses: ['10.244.1.6/32'] };
    const cases: [NetworkConfig, grpc.status, RegExp][] = [
      [{ interfaces: [{ mac: '02:5a:00:00:0a' }] }, grpc.status.INVALID_ARGUMENT, /interfaces\[0\]\.mac "02:5a:00:00:0a" is not a MAC address/],
      [{ interfaces: [{ mac: '02:5a:00:00:00:99', addresses: ['10.244.1.6/32'] }] }, grpc.status.NOT_FOUND, /interfaces\[0\]\.mac 02:5a:00:00:00:99: no link in the guest has this MAC/],
      [{ interfaces: [{ ...iface, addresses: ['10.244.1.6/33'] }] }, grpc.status.INVALID_ARGUMENT, /interfaces\[0\]\.addresses\[0\] "10\.244\.1\.6\/33"/],
      [{ interfaces: [iface], routes: [{ destination: '10.0.0.0/8', gateway: '169.254.1.1', interfaceMac: OTHER_MAC }] }, grpc.status.INVALID_ARGUMENT, /routes\[0\]\.interface_mac/],
      [{ interfaces: [{ ...iface, name: 'v1' }] }, grpc.status.FAILED_PRECONDITION, /interfaces\[0\]\.name v1 is already the name of another link/],
      [{ interfaces: [iface], neighbors: [{ ip: 'fd00:10::1', mac: 'ee:ee:ee:ee:ee:ee', interfaceMac: MAC }] }, grpc.status.UNIMPLEMENTED, /neighbors\[0\]\.ip/],
      [
        { interfaces: [iface], routes: Array.from({ length: 257 }, (_, i) => ({ destination: `10.${i >> 8}.${i & 255}.0/24`, interfaceMac: MAC })) },
        grpc.status.INVALID_ARGUMENT,
        /routes: 257 given, at most 256/,
      ],
    ];
    for (const [net, code, message] of cases) {
      const err = await refusal(agent.client.configureNetwork(net));
      expect(err.code, String(message)).toBe(code);
      expect(err.details).toMatch(message);
    }
    expect(state()).toBe(before);
  });

  it('names the step the kernel refused', async () => {
    const err = await refusal(agent.client.configureNetwork({ interfaces: [{ mac: MAC }], routes: [{ destination: '10.50.0.0/16', gateway: '10.9.9.9', interfaceMac: MAC }] }));
    expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(err.details).toMatch(/routes\[0\]: 10\.50\.0\.0\/16 via 10\.9\.9\.9 dev eth0: .*unreachable/i);
    // On-link, the same gateway is accepted.
    await agent.client.configureNetwork({ interfaces: [{ mac: MAC }], routes: [{ destination: '10.50.0.0/16', gateway: '10.9.9.9', interfaceMac: MAC, onlink: true }] });
    expect(json<RouteInfo[]>(['route', 'show', '10.50.0.0/16'])).toEqual([expect.objectContaining({ gateway: '10.9.9.9', flags: ['onlink'] })]);
  });

  it('writes the hosts file with the localhost lines, and refuses bad entries', async () => {
    await agent.client.setHostname('pod-1');
    await agent.client.setHosts([
      { ip: '10.244.1.5', names: ['pod-1'] },
      { ip: 'FD00:10:0::5', names: ['pod-1.example.test', 'alias'] },
    ]);
    const hosts = await readFile(path.join(agent.etcDir, 'hosts'), 'utf8');
    expect(hosts.split('\n').slice(0, 2)).toEqual(['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback']);
    expect(hosts.endsWith('10.244.1.5\tpod-1\nfd00:10::5\tpod-1.example.test alias\n')).toBe(true);
    const bads: [Parameters<HostAgent['client']['setHosts']>[0], RegExp][] = [
      [[{ ip: '10.0.0.1\n6.6.6.6', names: ['x'] }], /entries\[0\]\.ip/],
      [[{ ip: '10.0.0.1', names: ['bad name'] }], /entries\[0\]\.names\[0\]/],
      [[{ ip: '10.0.0.1', names: [] }], /entries\[0\]\.names: 0 given/],
      [Array.from({ length: 257 }, () => ({ ip: '10.0.0.1', names: ['x'] })), /entries: 257 given, at most 256/],
    ];
    for (const [entries, message] of bads) {
      const err = await refusal(agent.client.setHosts(entries));
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details).toMatch(message);
    }
    expect(await readFile(path.join(agent.etcDir, 'hosts'), 'utf8')).toBe(hosts);
  });
});
