import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChecked } from '../../src/network/exec.js';
import { readAddresses, readLink, readPermanentNeighbors, readRoutes } from '../../src/network/link-info.js';
import { createNetns, deleteNetns } from '../../src/network/netns.js';
import { podInterfaces } from '../../src/network/pod-nics.js';

/**
 * What a CNI interface looks like to vrun (src/network/link-info.ts, read with rtnetlink dumps) against what
 * iproute2 prints for the same namespace: a veth with IPv4 and IPv6 addresses, a default route, an onlink
 * route, a metric, a permanent neighbour, a tap (which is not a pod interface). All in a namespace of the
 * test's own.
 */
const id = `linkinfo-${randomBytes(4).toString('hex')}`;
let ns = '';
const ip = (...args: string[]) => runChecked(['ip', ...args], { netns: ns, what: `ip ${args.join(' ')}` });

beforeAll(async () => {
  ns = await createNetns(id);
  await ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0');
  await ip('link', 'set', 'eth0', 'mtu', '1400', 'address', '02:00:00:00:00:aa', 'up');
  await ip('link', 'set', 'peer0', 'up');
  await ip('addr', 'add', '10.77.0.2/24', 'dev', 'eth0');
  await ip('-6', 'addr', 'add', 'fd77::2/64', 'dev', 'eth0', 'nodad');
  await ip('route', 'add', 'default', 'via', '10.77.0.1', 'dev', 'eth0');
  await ip('route', 'add', '10.99.0.0/16', 'via', '169.254.1.1', 'dev', 'eth0', 'onlink', 'metric', '7');
  await ip('-6', 'route', 'add', 'default', 'via', 'fd77::1', 'dev', 'eth0');
  await ip('neigh', 'add', '169.254.1.1', 'lladdr', '02:00:00:00:00:01', 'dev', 'eth0', 'nud', 'permanent');
  await ip('tuntap', 'add', 'dev', 'tap_eth0', 'mode', 'tap');
});

afterAll(async () => {
  if (ns) await deleteNetns(id);
});

describe('link info read with rtnetlink', () => {
  it('agrees with iproute2 on the link', async () => {
    const [l] = JSON.parse(await ip('-j', '-d', 'link', 'show', 'dev', 'eth0')) as { ifindex: number; address: string; mtu: number }[];
    expect(await readLink(ns, 'eth0')).toEqual({ name: 'eth0', index: l!.ifindex, mac: '02:00:00:00:00:aa', mtu: 1400, kind: 'veth', up: true });
    expect(l!.address).toBe('02:00:00:00:00:aa');
  });

  it('lists the pod interfaces by ifindex, without loopback and taps', async () => {
    const links = JSON.parse(await ip('-j', 'link', 'show')) as { ifname: string; ifindex: number }[];
    const byIndex = links.filter((l) => l.ifname === 'eth0' || l.ifname === 'peer0').sort((a, b) => a.ifindex - b.ifindex);
    expect(links.map((l) => l.ifname)).toContain('tap_eth0');
    expect(await podInterfaces(ns)).toEqual(byIndex.map((l) => l.ifname));
  });

  it('reads the global addresses only', async () => {
    expect(await readAddresses(ns, 'eth0')).toEqual([
      { family: 4, address: '10.77.0.2', prefixLength: 24 },
      { family: 6, address: 'fd77::2', prefixLength: 64 },
    ]);
  });

  it('reads the main table routes through the device as iproute2 names them', async () => {
    const routes = await readRoutes(ns, 'eth0');
    expect(routes).toEqual(
      expect.arrayContaining([
        { family: 4, dst: '0.0.0.0/0', gateway: '10.77.0.1', dev: 'eth0', protocol: 'boot' },
        { family: 4, dst: '10.77.0.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link' },
        { family: 4, dst: '10.99.0.0/16', gateway: '169.254.1.1', dev: 'eth0', protocol: 'boot', metric: 7, onlink: true },
        { family: 6, dst: 'fd77::/64', dev: 'eth0', protocol: 'kernel', metric: 256 },
        { family: 6, dst: '::/0', gateway: 'fd77::1', dev: 'eth0', protocol: 'boot', metric: 1024 },
      ]),
    );
    // Link-local and multicast IPv6 routes are the guest's own business.
    expect(routes.filter((r) => r.dst.startsWith('fe80') || r.dst.startsWith('ff'))).toEqual([]);
    // As many as iproute2 shows through eth0 in the main table (fe80::/64 aside).
    const v4 = JSON.parse(await ip('-j', '-4', 'route', 'show', 'table', 'main', 'dev', 'eth0')) as unknown[];
    const v6 = (JSON.parse(await ip('-j', '-6', 'route', 'show', 'table', 'main', 'dev', 'eth0')) as { dst: string }[]).filter((r) => !r.dst.startsWith('fe80'));
    expect(routes).toHaveLength(v4.length + v6.length);
  });

  it('reads the permanent neighbours', async () => {
    expect(await readPermanentNeighbors(ns, 'eth0')).toEqual([{ ip: '169.254.1.1', mac: '02:00:00:00:00:01' }]);
  });

  it('names a missing interface and a missing namespace', async () => {
    await expect(readLink(ns, 'eth9')).rejects.toThrow(/reading link eth9: there is no interface eth9/);
    await expect(readLink('/run/netns/vrun-no-such-ns', 'eth0')).rejects.toThrow(/reading link eth0 in \/run\/netns\/vrun-no-such-ns: ENOENT/);
  });
});
