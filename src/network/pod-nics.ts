import type { NetworkConfig } from '../agent/host/client.js';
import { VrunError } from '../common/errors.js';
import { MAX_VM_NETS, type VmNet } from '../vmm/backend.js';
import { listLinks, readPermanentNeighbors, type Neighbor } from './link-info.js';
import { attachTap, detachTap, type PodNic, type TapOptions } from './tap.js';

/**
 * A pod's NICs, for both front doors: the CLI (whose CNI ADD made the interfaces) and the shim (where
 * containerd's CNI made them before the sandbox started). Each CNI interface gets a tap next to it; the VMM
 * gets the taps (vmNetsOf) and the guest gets the interfaces' addresses, routes and neighbours
 * (guestNetworkOf), so the pod's IP inside the guest is the one the CNI result and the CRI report.
 */
export interface AttachedNic extends PodNic {
  neighbors: Neighbor[];
}

/** The links in `netns` a CNI plugin made: all but loopback and taps (ours, from an earlier attach), by ifindex. */
export async function podInterfaces(netns: string): Promise<string[]> {
  const names = listLinks(netns)
    .filter((l) => !l.loopback && l.kind !== 'tun')
    .map((l) => l.name);
  if (names.length > MAX_VM_NETS) throw new VrunError(`the pod's network namespace has ${names.length} interfaces; a VM takes at most ${MAX_VM_NETS}`, { kind: 'invalid' });
  return names;
}

/**
 * A tap per interface, all or none: when one fails, the taps made before it go again, so a failed pod
 * start leaves the namespace as CNI made it.
 */
export async function attachPodNics(netns: string, ifnames: readonly string[], opts: Omit<TapOptions, 'tapName'> = {}): Promise<AttachedNic[]> {
  const nics: AttachedNic[] = [];
  try {
    for (const ifname of ifnames) {
      const nic = await attachTap(netns, ifname, opts);
      // Pushed before the neighbours are read: a failure there must still detach this tap.
      const attached: AttachedNic = { ...nic, neighbors: [] };
      nics.push(attached);
      attached.neighbors = await readPermanentNeighbors(netns, ifname);
    }
  } catch (e) {
    await detachPodNics(nics).catch(() => undefined);
    throw e;
  }
  return nics;
}

/** Removes every tap (and the veth's ingress qdisc); the first error is thrown after all were tried. */
export async function detachPodNics(nics: readonly Pick<PodNic, 'netns' | 'veth' | 'tap'>[]): Promise<void> {
  const errors: unknown[] = [];
  for (const n of nics) await detachTap(n.netns, n.veth, n.tap).catch((e: unknown) => errors.push(e));
  if (errors.length > 0) throw errors[0];
}

export function vmNetsOf(nics: readonly PodNic[]): VmNet[] {
  return nics.map((n) => ({ netns: n.netns, tap: n.tap, mac: n.mac, mtu: n.mtu }));
}

const ROUTE_SCOPES = new Set(['link', 'host']);

/**
 * The guest's configuration: each interface by MAC with the CNI interface's MTU and addresses, the routes
 * through it (the kernel's connected routes the guest makes itself, see the agent), and its permanent
 * neighbours. IPv6 neighbours are left out: the agent sets only ARP entries (NDP ones are not built yet).
 */
export function guestNetworkOf(nics: readonly AttachedNic[]): NetworkConfig {
  return {
    interfaces: nics.map((n) => ({ mac: n.mac, mtu: n.mtu, addresses: n.addresses.map((a) => `${a.address}/${a.prefixLength}`) })),
    routes: nics.flatMap((n) =>
      n.routes
        .filter((r) => r.protocol !== 'kernel')
        .map((r) => ({
          destination: r.dst,
          gateway: r.gateway,
          interfaceMac: n.mac,
          scope: r.scope && ROUTE_SCOPES.has(r.scope) ? (r.scope as 'link' | 'host') : undefined,
          onlink: r.onlink,
          metric: r.metric,
        })),
    ),
    neighbors: nics.flatMap((n) => n.neighbors.filter((x) => !x.ip.includes(':')).map((x) => ({ ip: x.ip, mac: x.mac, interfaceMac: n.mac }))),
  };
}

/** The pod's addresses (without prefix), IPv4 first: what `vrun ps` and the CRI report. */
export function podIps(nics: readonly PodNic[]): string[] {
  const all = nics.flatMap((n) => n.addresses);
  return [...all.filter((a) => a.family === 4), ...all.filter((a) => a.family === 6)].map((a) => a.address);
}
