import net from 'node:net';
import { VrunError } from '../common/errors.js';
import { runChecked } from './exec.js';

/**
 * What the guest NIC must copy from a CNI interface, read with iproute2's JSON output inside the pod's
 * namespace. The JSON is checked field by field: a value that is not what iproute2 documents is an error
 * naming the field, not a guest configured with garbage.
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
  throw new VrunError(`unexpected ${what} from iproute2: ${shown.length > 120 ? `${shown.slice(0, 120)}…` : shown}`, { kind: 'internal' });
}

function parseJsonArray(text: string, what: string): Record<string, unknown>[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return bad(`${what} (not JSON)`, text.slice(0, 120));
  }
  if (!Array.isArray(v) || !v.every((e) => typeof e === 'object' && e !== null && !Array.isArray(e))) bad(what, v);
  return v as Record<string, unknown>[];
}

function intIn(v: unknown, lo: number, hi: number, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) bad(what, v);
  return v as number;
}

export async function readLink(netns: string, dev: string): Promise<LinkInfo> {
  if (!IFNAME_RE.test(dev)) throw new VrunError(`interface name ${JSON.stringify(dev)} is not valid`, { kind: 'invalid' });
  const out = await runChecked(['ip', '-j', '-d', 'link', 'show', 'dev', dev], { netns, what: `reading link ${dev}` });
  const [l] = parseJsonArray(out, 'link list');
  if (!l) bad('link list', out);
  const name = l.ifname;
  if (typeof name !== 'string' || name !== dev) bad('link name', name);
  const mac = l.address;
  if (typeof mac !== 'string' || !MAC_RE.test(mac)) bad(`MAC address of ${dev}`, mac);
  const info = l.linkinfo as { info_kind?: unknown } | undefined;
  const kind = info && typeof info.info_kind === 'string' ? info.info_kind : '';
  const flags = Array.isArray(l.flags) ? l.flags : bad(`flags of ${dev}`, l.flags);
  return { name: dev, index: intIn(l.ifindex, 1, 2 ** 31, `ifindex of ${dev}`), mac, mtu: intIn(l.mtu, 68, 65535, `MTU of ${dev}`), kind, up: flags.includes('UP') };
}

/** The global-scope addresses (link-local ones the guest derives itself). */
export async function readAddresses(netns: string, dev: string): Promise<IpAddress[]> {
  const out = await runChecked(['ip', '-j', 'addr', 'show', 'dev', dev], { netns, what: `reading addresses of ${dev}` });
  const [l] = parseJsonArray(out, 'address list');
  if (!l) bad('address list', out);
  const infos = l.addr_info;
  if (!Array.isArray(infos)) bad(`addr_info of ${dev}`, infos);
  const addrs: IpAddress[] = [];
  for (const a of infos as Record<string, unknown>[]) {
    if (a.scope !== 'global') continue;
    const family = a.family === 'inet' ? 4 : a.family === 'inet6' ? 6 : bad('address family', a.family);
    const address = a.local;
    if (typeof address !== 'string' || net.isIP(address) !== family) bad(`IPv${family} address of ${dev}`, address);
    addrs.push({ family, address, prefixLength: intIn(a.prefixlen, 0, family === 4 ? 32 : 128, `prefix length of ${address}`) });
  }
  return addrs;
}

/** The main table's routes through `dev`, IPv4 and IPv6 (multipath routes, which name no single dev, skipped). */
export async function readRoutes(netns: string, dev: string): Promise<Route[]> {
  const routes: Route[] = [];
  for (const family of [4, 6] as const) {
    const out = await runChecked(['ip', '-j', `-${family}`, 'route', 'show', 'table', 'main'], { netns, what: 'reading routes' });
    for (const r of parseJsonArray(out, 'route list')) {
      if (r.dev !== dev) continue;
      const dst = r.dst === 'default' ? (family === 4 ? '0.0.0.0/0' : '::/0') : r.dst;
      if (typeof dst !== 'string') bad('route destination', dst);
      const [ip, len] = (dst as string).includes('/') ? (dst as string).split('/') : [dst as string, String(family === 4 ? 32 : 128)];
      if (net.isIP(ip ?? '') !== family || !/^\d+$/.test(len ?? '') || Number(len) > (family === 4 ? 32 : 128)) bad('route destination', dst);
      // The guest makes its own link-local and multicast routes.
      if (family === 6 && /^f[ef][0-9a-f]{2}:/i.test(ip ?? '')) continue;
      const route: Route = { family, dst: `${ip}/${len}`, dev };
      if (r.gateway !== undefined) {
        if (typeof r.gateway !== 'string' || net.isIP(r.gateway) !== family) bad('route gateway', r.gateway);
        route.gateway = r.gateway as string;
      }
      if (typeof r.protocol === 'string') route.protocol = r.protocol;
      if (typeof r.scope === 'string') route.scope = r.scope;
      if (r.metric !== undefined) route.metric = intIn(r.metric, 0, 2 ** 32 - 1, 'route metric');
      if (Array.isArray(r.flags) && r.flags.includes('onlink')) route.onlink = true;
      routes.push(route);
    }
  }
  return routes;
}

/** The permanent IPv4 and IPv6 neighbours on `dev`. */
export async function readPermanentNeighbors(netns: string, dev: string): Promise<Neighbor[]> {
  const out = await runChecked(['ip', '-j', 'neigh', 'show', 'dev', dev, 'nud', 'permanent'], { netns, what: `reading neighbours of ${dev}` });
  return parseJsonArray(out, 'neighbour list').map((n) => {
    const ip = n.dst;
    if (typeof ip !== 'string' || net.isIP(ip) === 0) bad(`neighbour address on ${dev}`, ip);
    const mac = n.lladdr;
    if (typeof mac !== 'string' || !MAC_RE.test(mac)) bad(`neighbour MAC on ${dev}`, mac);
    return { ip: ip as string, mac: mac as string };
  });
}
