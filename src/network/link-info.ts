import net from 'node:net';
import { VrunError, errorMessage } from '../common/errors.js';
import { loadNative } from '../common/native.js';

/**
 * What the guest NIC must copy from a CNI interface, read with rtnetlink dumps inside the pod's namespace
 * (native/src/netlink_snapshot.cc: one call, a few milliseconds, where `ip -j ... show` cost a process per
 * question). Every value is checked: one that is not what the kernel documents is an error naming the field,
 * not a guest configured with garbage.
 */
export interface LinkInfo {
  name: string;
  index: number;
  mac: string;
  mtu: number;
  /** linkinfo.info_kind: "veth", "tun", ... ('' for a plain device). */
  kind: string;
  up: boolean;
}

export interface IpAddress {
  family: 4 | 6;
  address: string;
  prefixLength: number;
}

export interface Route {
  family: 4 | 6;
  /** CIDR; iproute2's "default" becomes 0.0.0.0/0 or ::/0. */
  dst: string;
  gateway?: string;
  dev: string;
  /** "kernel" for the prefix routes an address brings with it. */
  protocol?: string;
  scope?: string;
  metric?: number;
  /** The gateway is on the link whatever the prefixes say (Calico's 169.254.1.1 style). */
  onlink?: boolean;
}

/** A permanent neighbour entry (`ip neigh add ... nud permanent`), which some CNIs (Calico) rely on. */
export interface Neighbor {
  ip: string;
  mac: string;
}

export const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const MAC_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

function bad(what: string, value: unknown): never {
  const shown = JSON.stringify(value) ?? String(value);
  throw new VrunError(`unexpected ${what} from rtnetlink: ${shown.length > 120 ? `${shown.slice(0, 120)}…` : shown}`, { kind: 'internal' });
}

function intIn(v: unknown, lo: number, hi: number, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) bad(what, v);
  return v as number;
}

interface RawLink {
  index: number;
  name: string;
  mac: string;
  mtu: number;
  up: boolean;
  loopback: boolean;
  kind: string;
}
interface RawAddress {
  family: 4 | 6;
  index: number;
  address: string;
  prefixLength: number;
  global: boolean;
}
interface RawRoute {
  family: 4 | 6;
  dst: string;
  dstLength: number;
  gateway: string;
  index: number;
  multipath: boolean;
  protocol: number;
  scope: number;
  onlink: boolean;
  metric?: number;
}
interface RawNeighbor {
  family: 4 | 6;
  index: number;
  ip: string;
  mac: string;
}
/** A namespace's links, addresses, main-table unicast routes and permanent neighbours, as the addon reads them. */
interface NetlinkSnapshot {
  links: RawLink[];
  addresses: RawAddress[];
  routes: RawRoute[];
  neighbors: RawNeighbor[];
}

function snapshot(netns: string, what: string): NetlinkSnapshot {
  const mod = loadNative<{ netlinkSnapshot?: (netns: string) => NetlinkSnapshot }>();
  if (typeof mod.netlinkSnapshot !== 'function') {
    throw new VrunError('the native addon is older than this vrun (it lacks netlinkSnapshot): rebuild it with "npx node-gyp rebuild --directory native"');
  }
  try {
    return mod.netlinkSnapshot(netns);
  } catch (err) {
    throw new VrunError(`${what} in ${netns}: ${errorMessage(err)}`, { kind: 'internal' });
  }
}

function linkNamed(snap: NetlinkSnapshot, dev: string, what: string): RawLink {
  const l = snap.links.find((x) => x.name === dev);
  if (!l) throw new VrunError(`${what}: there is no interface ${dev}`, { kind: 'internal' });
  return l;
}

function checkName(dev: string): void {
  if (!IFNAME_RE.test(dev)) throw new VrunError(`interface name ${JSON.stringify(dev)} is not valid`, { kind: 'invalid' });
}

/** The interfaces in `netns`, by ifindex: name, loopback or not, kind ("veth", "tun", '' for a plain device). */
export function listLinks(netns: string): { name: string; index: number; loopback: boolean; kind: string }[] {
  return snapshot(netns, 'listing the interfaces')
    .links.map((l) => ({ name: l.name, index: l.index, loopback: l.loopback, kind: l.kind }))
    .sort((a, b) => a.index - b.index);
}

export async function readLink(netns: string, dev: string): Promise<LinkInfo> {
  checkName(dev);
  const what = `reading link ${dev}`;
  const l = linkNamed(snapshot(netns, what), dev, what);
  if (!MAC_RE.test(l.mac)) bad(`MAC address of ${dev}`, l.mac);
  return { name: dev, index: intIn(l.index, 1, 2 ** 31, `ifindex of ${dev}`), mac: l.mac, mtu: intIn(l.mtu, 68, 65535, `MTU of ${dev}`), kind: l.kind, up: l.up };
}

/** The global-scope addresses (link-local ones the guest derives itself). */
export async function readAddresses(netns: string, dev: string): Promise<IpAddress[]> {
  checkName(dev);
  const what = `reading addresses of ${dev}`;
  const snap = snapshot(netns, what);
  const l = linkNamed(snap, dev, what);
  return snap.addresses
    .filter((a) => a.index === l.index && a.global)
    .map((a) => {
      if (net.isIP(a.address) !== a.family) bad(`IPv${a.family} address of ${dev}`, a.address);
      return { family: a.family, address: a.address, prefixLength: intIn(a.prefixLength, 0, a.family === 4 ? 32 : 128, `prefix length of ${a.address}`) };
    });
}

/** iproute2's names for the route protocols and scopes vrun looks at (rtnetlink gives numbers). */
const PROTOCOLS: Record<number, string> = { 2: 'kernel', 3: 'boot', 4: 'static', 9: 'ra', 16: 'dhcp' };
const SCOPES: Record<number, string> = { 200: 'site', 253: 'link', 254: 'host' };

/** The main table's routes through `dev`, IPv4 and IPv6 (multipath routes, which name no single dev, skipped). */
export async function readRoutes(netns: string, dev: string): Promise<Route[]> {
  checkName(dev);
  const snap = snapshot(netns, 'reading routes');
  const l = linkNamed(snap, dev, 'reading routes');
  const routes: Route[] = [];
  for (const r of snap.routes) {
    if (r.multipath || r.index !== l.index) continue;
    const family = r.family;
    const max = family === 4 ? 32 : 128;
    const len = intIn(r.dstLength, 0, max, 'route destination length');
    const ip = len === 0 && r.dst === '' ? (family === 4 ? '0.0.0.0' : '::') : r.dst;
    if (net.isIP(ip) !== family) bad('route destination', r.dst);
    // The guest makes its own link-local and multicast routes.
    if (family === 6 && /^f[ef][0-9a-f]{2}:/i.test(ip)) continue;
    const route: Route = { family, dst: `${ip}/${len}`, dev };
    if (r.gateway !== '') {
      if (net.isIP(r.gateway) !== family) bad('route gateway', r.gateway);
      route.gateway = r.gateway;
    }
    route.protocol = PROTOCOLS[r.protocol] ?? String(intIn(r.protocol, 0, 255, 'route protocol'));
    const scope = intIn(r.scope, 0, 255, 'route scope');
    if (scope !== 0) route.scope = SCOPES[scope] ?? String(scope);
    if (r.metric !== undefined) route.metric = intIn(r.metric, 0, 2 ** 32 - 1, 'route metric');
    if (r.onlink) route.onlink = true;
    routes.push(route);
  }
  return routes;
}

/** The permanent IPv4 and IPv6 neighbours on `dev`. */
export async function readPermanentNeighbors(netns: string, dev: string): Promise<Neighbor[]> {
  checkName(dev);
  const what = `reading neighbours of ${dev}`;
  const snap = snapshot(netns, what);
  const l = linkNamed(snap, dev, what);
  return snap.neighbors
    .filter((n) => n.index === l.index)
    .map((n) => {
      if (net.isIP(n.ip) !== n.family) bad(`neighbour address on ${dev}`, n.ip);
      if (!MAC_RE.test(n.mac)) bad(`neighbour MAC on ${dev}`, n.mac);
      return { ip: n.ip, mac: n.mac };
    });
}
