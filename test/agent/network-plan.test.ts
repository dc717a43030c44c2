import { describe, expect, it } from 'vitest';
import {
  formatIp,
  formatPrefix,
  parseAddresses,
  parseIp,
  parseLinks,
  parsePrefix,
  planNetwork,
  resolveLinks,
} from '../../src/agent/guest/network.js';
import type { ConfigureNetworkRequest__Output } from '../../src/agent/protocol/generated/vrun/agent/v1/ConfigureNetworkRequest.js';
import type { NetworkRoute__Output } from '../../src/agent/protocol/generated/vrun/agent/v1/NetworkRoute.js';

const MAC = '02:00:00:00:00:0a';

function request(over: Partial<ConfigureNetworkRequest__Output> = {}): ConfigureNetworkRequest__Output {
  return { interfaces: [{ mac: MAC, name: '', mtu: 0, addresses: ['10.1.2.3/32'] }], routes: [], neighbors: [], ...over };
}

function route(over: Partial<NetworkRoute__Output>): NetworkRoute__Output {
  return { destination: '0.0.0.0/0', gateway: '', interfaceMac: MAC, source: '', scope: 'ROUTE_SCOPE_UNSPECIFIED', onlink: false, metric: 0, ...over };
}

function refusal(req: ConfigureNetworkRequest__Output): string {
  try {
    planNetwork(req);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('the request was accepted');
}

describe('ConfigureNetwork: addresses', () => {
  it('parses strictly and prints the canonical forms', () => {
    for (const [text, canonical] of [
      ['10.0.0.1', '10.0.0.1'],
      ['FD00:0:0::0001', 'fd00::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['::ffff:1.2.3.4', '::ffff:102:304'],
      ['::', '::'],
      ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ]) {
      const ip = parseIp(text as string);
      expect(ip, text).not.toBeNull();
      expect(formatIp(ip!)).toBe(canonical);
    }
    for (const bad of ['010.0.0.1', '10.0.0', '10.0.0.256', ' 10.0.0.1', 'fe80::1%eth0', '1::2::3', '10.0.0.1\n', 'localhost', '']) {
      expect(parseIp(bad), bad).toBeNull();
    }
    expect(formatPrefix(parsePrefix('fd00::5/64')!)).toBe('fd00::5/64');
    for (const bad of ['10.0.0.1', '10.0.0.1/33', '10.0.0.1/08', 'fd00::/129', '10.0.0.1/', '10.0.0.1/24/1']) {
      expect(parsePrefix(bad), bad).toBeNull();
    }
  });

  it('reads busybox ip output', () => {
    const links = parseLinks(
      [
        '1: lo: <LOOPBACK> mtu 65536 qdisc noop qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00',
        '3: v0@v1: <BROADCAST,MULTICAST,UP> mtu 1500 qdisc noqueue qlen 1000\\    link/ether 02:00:00:00:00:0a brd ff:ff:ff:ff:ff:ff',
        '4: eth1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop qlen 1000\\    link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff',
      ].join('\n'),
    );
    expect(links).toEqual([
      { name: 'v0', mac: '02:00:00:00:00:0a' },
      { name: 'eth1', mac: '52:54:00:12:34:56' },
    ]);
    const addrs = parseAddresses('3: v0    inet 10.1.2.3/32 scope global v0\\       valid_lft forever\n3: v0    inet6 fd00::5/64 scope global tentative \\ valid_lft forever\n');
    expect(addrs.map(formatPrefix)).toEqual(['10.1.2.3/32', 'fd00::5/64']);
  });
});

describe('ConfigureNetwork: the plan', () => {
  it('skips kernel-made link-local addresses and connected routes, and puts connected routes first', () => {
    const plan = planNetwork(
      request({
        interfaces: [{ mac: '02:00:00:00:00:0A', name: 'eth0', mtu: 1450, addresses: ['10.1.3.3/24', 'fd00::5/64', 'fe80::1/64', '10.1.2.3/32'] }],
        routes: [
          route({ destination: '0.0.0.0/0', gateway: '169.254.1.1', interfaceMac: '02:00:00:00:00:0A' }),
          route({ destination: '169.254.1.1/32', scope: 'ROUTE_SCOPE_LINK' }),
          route({ destination: '10.1.3.0/24' }),
          route({ destination: 'fd00::/64' }),
          route({ destination: 'fe80::/64' }),
          route({ destination: '10.1.2.3/32' }),
          route({ destination: '10.1.3.0/24', gateway: '169.254.1.1', metric: 10 }),
        ],
        neighbors: [{ ip: '169.254.1.1', mac: 'EE:EE:EE:EE:EE:EE', interfaceMac: MAC, permanent: true }],
      }),
    );
    expect(plan.interfaces).toHaveLength(1);
    expect(plan.interfaces[0]?.mac).toBe(MAC);
    expect(plan.interfaces[0]?.addresses.map(formatPrefix)).toEqual(['10.1.3.3/24', 'fd00::5/64', '10.1.2.3/32']);
    expect(plan.routes.map((r) => `${formatPrefix(r.destination)}${r.gateway ? ` via ${formatIp(r.gateway)}` : ''}`)).toEqual([
      '169.254.1.1/32',
      '10.1.2.3/32',
      '0.0.0.0/0 via 169.254.1.1',
      '10.1.3.0/24 via 169.254.1.1',
    ]);
    expect(plan.neighbors[0]?.mac).toBe('ee:ee:ee:ee:ee:ee');
  });

  it('refuses bad fields, naming them', () => {
    const cases: [Partial<ConfigureNetworkRequest__Output>, RegExp][] = [
      [{ interfaces: [{ mac: '02:00:00:00:00', name: '', mtu: 0, addresses: [] }] }, /interfaces\[0\]\.mac .* is not a MAC address/],
      [{ interfaces: [{ mac: '01:00:5e:00:00:01', name: '', mtu: 0, addresses: [] }] }, /interfaces\[0\]\.mac .* multicast/],
      [{ interfaces: [{ mac: '00:00:00:00:00:00', name: '', mtu: 0, addresses: [] }] }, /all-zero/],
      [{ interfaces: [{ mac: MAC, name: '', mtu: 0, addresses: [] }, { mac: MAC.toUpperCase(), name: '', mtu: 0, addresses: [] }] }, /interfaces\[1\]\.mac .* twice/],
      [{ interfaces: [{ mac: MAC, name: '-x', mtu: 0, addresses: [] }] }, /interfaces\[0\]\.name "-x"/],
      [{ interfaces: [{ mac: MAC, name: 'a'.repeat(16), mtu: 0, addresses: [] }] }, /interfaces\[0\]\.name/],
      [{ interfaces: [{ mac: MAC, name: 'eth/0', mtu: 0, addresses: [] }] }, /interfaces\[0\]\.name/],
      [{ interfaces: [{ mac: MAC, name: '', mtu: 67, addresses: [] }] }, /interfaces\[0\]\.mtu 67/],
      [{ interfaces: [{ mac: MAC, name: '', mtu: 1000, addresses: ['fd00::1/64'] }] }, /interfaces\[0\]\.mtu 1000 .* IPv6/],
      [{ interfaces: [{ mac: MAC, name: '', mtu: 0, addresses: ['10.0.0.300/24'] }] }, /interfaces\[0\]\.addresses\[0\] "10\.0\.0\.300\/24"/],
      [{ interfaces: [{ mac: MAC, name: '', mtu: 0, addresses: ['10.0.0.1'] }] }, /interfaces\[0\]\.addresses\[0\] .* prefix length/],
      [{ interfaces: [{ mac: MAC, name: '', mtu: 0, addresses: ['224.0.0.1/4'] }] }, /interfaces\[0\]\.addresses\[0\] .* not a unicast/],
      [{ interfaces: [{ mac: MAC, name: '', mtu: 0, addresses: ['10.0.0.1/24', '10.0.0.1/16'] }] }, /addresses\[1\] 10\.0\.0\.1 is given twice/],
      [{ routes: [route({ destination: '10.0.0.1/8' })] }, /routes\[0\]\.destination .* host bits .* 10\.0\.0\.0\/8/],
      [{ routes: [route({ destination: 'default' })] }, /routes\[0\]\.destination "default" is not a prefix/],
      [{ routes: [route({ gateway: 'fd00::1' })] }, /routes\[0\]\.gateway .* not of the destination's family/],
      [{ routes: [route({ gateway: '10.0.0.1', interfaceMac: '02:00:00:00:00:0b' })] }, /routes\[0\]\.interface_mac .* not the MAC of any of the request's interfaces/],
      [{ routes: [route({ onlink: true })] }, /routes\[0\]\.onlink needs a gateway/],
      [{ routes: [route({ scope: 9 as unknown as 'ROUTE_SCOPE_LINK' })] }, /routes\[0\]\.scope/],
      [{ routes: [route({ gateway: '10.0.0.1' }), route({ gateway: '10.0.0.2' })] }, /routes\[1\] repeats routes\[0\]/],
      [{ neighbors: [{ ip: '169.254.1.1', mac: 'ee:ee:ee:ee:ee', interfaceMac: MAC, permanent: true }] }, /neighbors\[0\]\.mac/],
      [{ neighbors: [{ ip: '169.254.1.1/32', mac: 'ee:ee:ee:ee:ee:ee', interfaceMac: MAC, permanent: true }] }, /neighbors\[0\]\.ip/],
      [{ neighbors: [{ ip: 'fd00::1', mac: 'ee:ee:ee:ee:ee:ee', interfaceMac: MAC, permanent: true }] }, /neighbors\[0\]\.ip .* IPv6 neighbours are not supported/],
    ];
    for (const [over, message] of cases) expect(refusal(request(over))).toMatch(message);
  });

  it('bounds every list', () => {
    const iface = (i: number, addresses: string[] = []) => ({ mac: `02:00:00:00:01:${i.toString(16).padStart(2, '0')}`, name: '', mtu: 0, addresses });
    expect(refusal(request({ interfaces: Array.from({ length: 17 }, (_, i) => iface(i)) }))).toMatch(/interfaces: 17 given, at most 16/);
    const many = Array.from({ length: 13 }, (_, i) => iface(i, Array.from({ length: 5 }, (_, j) => `10.${i}.${j}.1/24`)));
    expect(refusal(request({ interfaces: many }))).toMatch(/addresses: 65 given in all, at most 64/);
    const routes = Array.from({ length: 257 }, (_, i) => route({ destination: `10.${i >> 8}.${i & 255}.0/24` }));
    expect(refusal(request({ routes }))).toMatch(/routes: 257 given, at most 256/);
    const neighbors = Array.from({ length: 257 }, (_, i) => ({ ip: `10.9.${i >> 8}.${(i & 255) + 1}`, mac: 'ee:ee:ee:ee:ee:ee', interfaceMac: MAC, permanent: true }));
    expect(refusal(request({ neighbors }))).toMatch(/neighbors: 257 given, at most 256/);
  });

  it('checks the plan against the guest links', () => {
    const plan = planNetwork(request({ interfaces: [{ mac: MAC, name: 'eth0', mtu: 0, addresses: [] }] }));
    expect(resolveLinks(plan, [{ name: 'v0', mac: MAC }]).get(MAC)).toEqual({ current: 'v0', final: 'eth0' });
    expect(() => resolveLinks(plan, [{ name: 'v0', mac: '02:00:00:00:00:0b' }])).toThrow(/interfaces\[0\]\.mac 02:00:00:00:00:0a: no link in the guest has this MAC/);
    expect(() => resolveLinks(plan, [{ name: 'v0', mac: MAC }, { name: 'v1', mac: MAC }])).toThrow(/names 2 links \(v0, v1\)/);
    expect(() => resolveLinks(plan, [{ name: 'v0', mac: MAC }, { name: 'eth0', mac: '02:00:00:00:00:0b' }])).toThrow(/interfaces\[0\]\.name eth0 is already the name of another link/);
  });
});
