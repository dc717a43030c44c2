/**
 * ConfigureNetwork: the guest's links, addresses, routes and static neighbours. The guest has no iproute2,
 * only busybox: `ip` for links, addresses and routes, `arp -s` for neighbours (busybox's `ip neigh` can only
 * show and flush; SIOCSARP without ATF_TEMP makes a PERMANENT entry, which is what CNIs need). Everything is
 * checked, against the request and then against the guest's links, before the first command runs.
 */
import { isIPv6 } from 'node:net';
import { status } from '@grpc/grpc-js';
import type { AgentConfig } from './config.js';
import { runTracked } from './own-children.js';
import { invalid, notFound, precondition, RpcError } from '../protocol/rpc-error.js';
import type { ConfigureNetworkRequest__Output } from '../protocol/generated/vrun/agent/v1/ConfigureNetworkRequest.js';

export const MAX_INTERFACES = 16;
export const MAX_ADDRESSES = 64;
export const MAX_ROUTES = 256;
export const MAX_NEIGHBORS = 256;

export interface Ip {
  family: 4 | 6;
  bytes: Uint8Array;
}

export interface Prefix {
  ip: Ip;
  len: number;
}

export interface PlannedInterface {
  mac: string;
  name: string | null;
  mtu: number | null;
  /** Link-local IPv6 addresses are already dropped: the kernel makes the link's own. */
  addresses: Prefix[];
}

export interface PlannedRoute {
  field: string;
  destination: Prefix;
  gateway: Ip | null;
  interfaceMac: string;
  source: Ip | null;
  scope: 'global' | 'link' | 'host' | null;
  onlink: boolean;
  metric: number;
}

export interface PlannedNeighbor {
  field: string;
  ip: Ip;
  mac: string;
  interfaceMac: string;
  permanent: boolean;
}

export interface NetworkPlan {
  interfaces: PlannedInterface[];
  /** Connected routes first: a gateway route needs its gateway reachable when it is added. */
  routes: PlannedRoute[];
  neighbors: PlannedNeighbor[];
}

/** A link as the guest's kernel reports it. */
export interface Link {
  name: string;
  mac: string;
}

const show = (value: string) => JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
/** What the kernel takes as a name (dev_valid_name), narrowed: nothing a tool could read as an option or a path. */
const IFNAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

function parseIpv6(text: string): Uint8Array | null {
  // isIPv6 accepts zone ids ("fe80::1%eth0"), which name a link by name: refused with the charset.
  if (text.length > 45 || !/^[0-9A-Fa-f:.]+$/.test(text) || !isIPv6(text)) return null;
  const halves = text.split('::');
  const groups = (s: string): number[] => {
    if (s === '') return [];
    const out: number[] = [];
    for (const part of s.split(':')) {
      if (part.includes('.')) {
        const v4 = part.split('.').map(Number);
        out.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
      } else out.push(parseInt(part, 16));
    }
    return out;
  };
  const head = groups(halves[0] ?? '');
  const tail = halves.length > 1 ? groups(halves[1] ?? '') : [];
  const all = halves.length > 1 ? [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail] : head;
  if (all.length !== 8) return null;
  const bytes = new Uint8Array(16);
  all.forEach((g, i) => {
    bytes[i * 2] = g >> 8;
    bytes[i * 2 + 1] = g & 0xff;
  });
  return bytes;
}

export function parseIp(value: string): Ip | null {
  if (IPV4.test(value)) return { family: 4, bytes: Uint8Array.from(value.split('.').map(Number)) };
  const v6 = parseIpv6(value);
  return v6 ? { family: 6, bytes: v6 } : null;
}

/** RFC 5952 text for IPv6 (lowercase, the longest run of zero groups as "::"), dotted quad for IPv4. */
export function formatIp(ip: Ip): string {
  if (ip.family === 4) return [...ip.bytes].join('.');
  const g = Array.from({ length: 8 }, (_, i) => ((ip.bytes[i * 2] ?? 0) << 8) | (ip.bytes[i * 2 + 1] ?? 0));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  return best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

export function formatPrefix(p: Prefix): string {
  return `${formatIp(p.ip)}/${p.len}`;
}

export function parsePrefix(value: string): Prefix | null {
  const slash = value.indexOf('/');
  if (slash < 0) return null;
  const ip = parseIp(value.slice(0, slash));
  const lenText = value.slice(slash + 1);
  if (!ip || !/^(0|[1-9]\d{0,2})$/.test(lenText)) return null;
  const len = Number(lenText);
  return len <= (ip.family === 4 ? 32 : 128) ? { ip, len } : null;
}

/** The prefix's network: its address with the host bits cleared. */
export function networkOf(p: Prefix): Prefix {
  const bytes = Uint8Array.from(p.ip.bytes, (b, i) => {
    const bits = Math.max(0, Math.min(8, p.len - i * 8));
    return b & ((0xff << (8 - bits)) & 0xff);
  });
  return { ip: { family: p.ip.family, bytes }, len: p.len };
}

export function sameIp(a: Ip, b: Ip): boolean {
  return a.family === b.family && a.bytes.every((x, i) => x === b.bytes[i]);
}

function samePrefix(a: Prefix, b: Prefix): boolean {
  return a.len === b.len && sameIp(a.ip, b.ip);
}

function isUnspecified(ip: Ip): boolean {
  return ip.bytes.every((b) => b === 0);
}

function isMulticast(ip: Ip): boolean {
  const b0 = ip.bytes[0] ?? 0;
  return ip.family === 4 ? b0 >= 224 && b0 <= 239 : b0 === 0xff;
}

function isLoopback(ip: Ip): boolean {
  return ip.family === 4 ? ip.bytes[0] === 127 : ip.bytes.every((b, i) => b === (i === 15 ? 1 : 0));
}

function isBroadcast(ip: Ip): boolean {
  return ip.family === 4 && ip.bytes.every((b) => b === 255);
}

export function isIpv6LinkLocal(ip: Ip): boolean {
  return ip.family === 6 && ip.bytes[0] === 0xfe && ((ip.bytes[1] ?? 0) & 0xc0) === 0x80;
}

/** A host address: neither unspecified, loopback, multicast nor the IPv4 broadcast address. */
function checkHostIp(field: string, value: string, ip: Ip | null): Ip {
  if (!ip) throw invalid(`${field} ${show(value)} is not an IPv4 or IPv6 address`);
  if (isUnspecified(ip) || isLoopback(ip) || isMulticast(ip) || isBroadcast(ip)) {
    throw invalid(`${field} ${show(value)} is not a unicast address (unspecified, loopback, multicast or broadcast)`);
  }
  return ip;
}

function checkMac(field: string, value: string): string {
  if (!MAC.test(value)) throw invalid(`${field} ${show(value)} is not a MAC address (six hex pairs separated by ":")`);
  const mac = value.toLowerCase();
  if (mac === '00:00:00:00:00:00') throw invalid(`${field} ${mac} is the all-zero MAC address`);
  if (parseInt(mac.slice(0, 2), 16) & 1) throw invalid(`${field} ${mac} is a multicast MAC address`);
  return mac;
}

const SCOPES = { ROUTE_SCOPE_UNSPECIFIED: null, ROUTE_SCOPE_UNIVERSE: 'global', ROUTE_SCOPE_LINK: 'link', ROUTE_SCOPE_HOST: 'host' } as const;

/** Checks the request on its own (formats, counts, references inside it); nothing about the guest yet. */
export function planNetwork(req: ConfigureNetworkRequest__Output): NetworkPlan {
  if (req.interfaces.length > MAX_INTERFACES) throw invalid(`interfaces: ${req.interfaces.length} given, at most ${MAX_INTERFACES}`);
  if (req.routes.length > MAX_ROUTES) throw invalid(`routes: ${req.routes.length} given, at most ${MAX_ROUTES}`);
  if (req.neighbors.length > MAX_NEIGHBORS) throw invalid(`neighbors: ${req.neighbors.length} given, at most ${MAX_NEIGHBORS}`);
  const addressCount = req.interfaces.reduce((n, i) => n + i.addresses.length, 0);
  if (addressCount > MAX_ADDRESSES) throw invalid(`interfaces[].addresses: ${addressCount} given in all, at most ${MAX_ADDRESSES}`);

  const interfaces: PlannedInterface[] = [];
  const byMac = new Map<string, PlannedInterface & { all: Prefix[] }>();
  const names = new Map<string, string>();
  req.interfaces.forEach((iface, i) => {
    const at = `interfaces[${i}]`;
    const mac = checkMac(`${at}.mac`, iface.mac);
    if (byMac.has(mac)) throw invalid(`${at}.mac ${mac} is given twice`);
    let name: string | null = null;
    if (iface.name !== '') {
      if (!IFNAME.test(iface.name) || iface.name === 'lo') throw invalid(`${at}.name ${show(iface.name)} is not a link name (1-15 of [A-Za-z0-9_.-], not starting with "-" or ".", not "lo")`);
      const other = names.get(iface.name);
      if (other) throw invalid(`${at}.name ${iface.name} is also ${other}'s`);
      names.set(iface.name, at);
      name = iface.name;
    }
    const all: Prefix[] = [];
    iface.addresses.forEach((text, j) => {
      const field = `${at}.addresses[${j}]`;
      const p = parsePrefix(text);
      if (!p) throw invalid(`${field} ${show(text)} is not an address with a prefix length ("10.1.2.3/24", "fd00::2/64")`);
      checkHostIp(field, text, p.ip);
      if (all.some((q) => sameIp(q.ip, p.ip))) throw invalid(`${field} ${formatIp(p.ip)} is given twice`);
      all.push(p);
    });
    let mtu: number | null = null;
    if (iface.mtu !== 0) {
      if (iface.mtu < 68 || iface.mtu > 65535) throw invalid(`${at}.mtu ${iface.mtu} is out of range (68..65535, or 0 to keep the link's)`);
      // Below 1280 the kernel turns IPv6 off on the link, silently dropping the addresses asked for.
      if (iface.mtu < 1280 && all.some((p) => p.ip.family === 6)) throw invalid(`${at}.mtu ${iface.mtu} is below IPv6's minimum of 1280 and the interface has IPv6 addresses`);
      mtu = iface.mtu;
    }
    const planned = { mac, name, mtu, addresses: all.filter((p) => !isIpv6LinkLocal(p.ip)) };
    interfaces.push(planned);
    byMac.set(mac, { ...planned, all });
  });

  const knownInterface = (field: string, value: string): string => {
    const mac = checkMac(field, value);
    if (!byMac.has(mac)) throw invalid(`${field} ${mac} is not the MAC of any of the request's interfaces`);
    return mac;
  };

  const routes: PlannedRoute[] = [];
  const routeKeys = new Map<string, string>();
  req.routes.forEach((r, i) => {
    const at = `routes[${i}]`;
    const destination = parsePrefix(r.destination);
    if (!destination) throw invalid(`${at}.destination ${show(r.destination)} is not a prefix ("10.0.0.0/8", "0.0.0.0/0", "fd00::/64")`);
    if (!samePrefix(destination, networkOf(destination))) throw invalid(`${at}.destination ${show(r.destination)} has host bits set (the network is ${formatPrefix(networkOf(destination))})`);
    const family = destination.ip.family;
    const sameFamily = (field: string, text: string): Ip | null => {
      if (text === '') return null;
      const ip = checkHostIp(field, text, parseIp(text));
      if (ip.family !== family) throw invalid(`${field} ${show(text)} is not of the destination's family (IPv${family})`);
      return ip;
    };
    const gateway = sameFamily(`${at}.gateway`, r.gateway);
    const source = sameFamily(`${at}.source`, r.source);
    const interfaceMac = knownInterface(`${at}.interface_mac`, r.interfaceMac);
    const scope = Object.hasOwn(SCOPES, r.scope) ? SCOPES[r.scope as keyof typeof SCOPES] : undefined;
    if (scope === undefined) throw invalid(`${at}.scope ${show(String(r.scope))} is not a RouteScope`);
    if (r.onlink && !gateway) throw invalid(`${at}.onlink needs a gateway`);
    // The kernel keys a route by destination and metric: a second one would replace the first.
    const key = `${formatPrefix(destination)} metric ${r.metric}`;
    const earlier = routeKeys.get(key);
    if (earlier) throw invalid(`${at} repeats ${earlier}'s destination and metric (${key})`);
    routeKeys.set(key, at);
    const iface = byMac.get(interfaceMac);
    // The kernel adds these itself with the address (and fe80::/64 with the link): adding one again fails,
    // and replacing it would lose the kernel's preferred source.
    const kernelMade =
      !gateway &&
      ((family === 6 && destination.len === 64 && isIpv6LinkLocal(destination.ip)) ||
        (iface?.all ?? []).some((p) => p.len < (p.ip.family === 4 ? 32 : 128) && samePrefix(networkOf(p), destination)));
    if (kernelMade) return;
    routes.push({ field: at, destination, gateway, interfaceMac, source, scope, onlink: r.onlink, metric: r.metric });
  });
  routes.sort((a, b) => Number(a.gateway !== null) - Number(b.gateway !== null));

  const neighbors: PlannedNeighbor[] = [];
  const neighborKeys = new Map<string, string>();
  req.neighbors.forEach((n, i) => {
    const at = `neighbors[${i}]`;
    const ip = checkHostIp(`${at}.ip`, n.ip, parseIp(n.ip));
    const mac = checkMac(`${at}.mac`, n.mac);
    const interfaceMac = knownInterface(`${at}.interface_mac`, n.interfaceMac);
    if (ip.family === 6) {
      throw new RpcError(status.UNIMPLEMENTED, `${at}.ip ${formatIp(ip)}: IPv6 neighbours are not supported (the guest's busybox cannot add them; that needs netlink)`);
    }
    const key = `${formatIp(ip)} on ${interfaceMac}`;
    const earlier = neighborKeys.get(key);
    if (earlier) throw invalid(`${at} repeats ${earlier} (${key})`);
    neighborKeys.set(key, at);
    neighbors.push({ field: at, ip, mac, interfaceMac, permanent: n.permanent });
  });
  return { interfaces, routes, neighbors };
}

/** `busybox ip -o link`: "3: eth0: <...> mtu 1500 ...\    link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff". */
export function parseLinks(out: string): Link[] {
  const links: Link[] = [];
  for (const line of out.split('\n')) {
    const m = /^\d+: ([^\s:@]+)(@\S*)?: <.*\blink\/ether ([0-9a-f:]{17})\b/.exec(line);
    if (m?.[1] && m[3]) links.push({ name: m[1], mac: m[3] });
  }
  return links;
}

/** `busybox ip -o addr show dev X`: the "inet A/N" and "inet6 A/N" words. */
export function parseAddresses(out: string): Prefix[] {
  const found: Prefix[] = [];
  for (const m of out.matchAll(/\binet6? ([0-9A-Fa-f.:]+\/\d+)/g)) {
    const p = parsePrefix(m[1] ?? '');
    if (p) found.push(p);
  }
  return found;
}

/**
 * The names each interface will have, checked against the guest's links: every MAC names exactly one link,
 * and no rename takes a name another link keeps.
 */
export function resolveLinks(plan: NetworkPlan, links: Link[]): Map<string, { current: string; final: string }> {
  const out = new Map<string, { current: string; final: string }>();
  plan.interfaces.forEach((iface, i) => {
    const matches = links.filter((l) => l.mac === iface.mac);
    if (matches.length === 0) throw notFound(`interfaces[${i}].mac ${iface.mac}: no link in the guest has this MAC address (${links.slice(0, 16).map((l) => `${l.name} ${l.mac}`).join(', ') || 'no ethernet links'}${links.length > 16 ? ', ...' : ''})`);
    if (matches.length > 1) throw precondition(`interfaces[${i}].mac ${iface.mac} names ${matches.length} links (${matches.map((l) => l.name).join(', ')})`);
    const current = (matches[0] as Link).name;
    out.set(iface.mac, { current, final: iface.name ?? current });
  });
  plan.interfaces.forEach((iface, i) => {
    if (!iface.name) return;
    const holder = links.find((l) => l.name === iface.name && l.mac !== iface.mac);
    if (holder) throw precondition(`interfaces[${i}].name ${iface.name} is already the name of another link (${holder.mac})`);
  });
  return out;
}

let queue: Promise<unknown> = Promise.resolve();

/** One configuration at a time: two interleaved would race on the same links. */
export function configureNetwork(cfg: AgentConfig, req: ConfigureNetworkRequest__Output): Promise<{ mac: string; name: string }[]> {
  const run = queue.then(() => apply(cfg, req));
  queue = run.catch(() => undefined);
  return run;
}

async function apply(cfg: AgentConfig, req: ConfigureNetworkRequest__Output): Promise<{ mac: string; name: string }[]> {
  const plan = planNetwork(req);
  const busybox = (step: string, args: string[]) =>
    runTracked(cfg.busybox, args).catch((err: unknown) => {
      const e = err as Error & { stderr?: string };
      const why = (e.stderr?.trim() || e.message).slice(0, 400);
      throw new RpcError(status.FAILED_PRECONDITION, `${step}: ${why}`, err);
    });
  const links = parseLinks((await busybox('listing the guest\'s links', ['ip', '-o', 'link'])).stdout);
  const names = resolveLinks(plan, links);
  const nameOf = (mac: string) => (names.get(mac) as { final: string }).final;

  for (const [i, iface] of plan.interfaces.entries()) {
    const at = `interfaces[${i}] (${iface.mac})`;
    const { current, final } = names.get(iface.mac) as { current: string; final: string };
    if (current !== final) {
      // The kernel renames only a link that is down; going down drops its routes and IPv6 addresses, which
      // is why renames come before anything else is added.
      await busybox(`${at}: taking ${current} down to rename it`, ['ip', 'link', 'set', 'dev', current, 'down']);
      await busybox(`${at}: renaming ${current} to ${final}`, ['ip', 'link', 'set', 'dev', current, 'name', final]);
    }
    await busybox(`${at}: setting ${final}${iface.mtu ? `'s MTU to ${iface.mtu} and` : ''} up`, ['ip', 'link', 'set', 'dev', final, ...(iface.mtu ? ['mtu', String(iface.mtu)] : []), 'up']);
    if (iface.addresses.length === 0) continue;
    const present = parseAddresses((await busybox(`${at}: listing ${final}'s addresses`, ['ip', '-o', 'addr', 'show', 'dev', final])).stdout);
    for (const [j, p] of iface.addresses.entries()) {
      if (present.some((q) => samePrefix(q, p))) continue;
      await busybox(`${at}.addresses[${j}]: adding ${formatPrefix(p)} to ${final}`, ['ip', 'addr', 'add', formatPrefix(p), 'dev', final]);
    }
  }

  for (const r of plan.routes) {
    const args = ['ip', `-${r.destination.ip.family}`, 'route', 'replace', formatPrefix(r.destination)];
    if (r.gateway) args.push('via', formatIp(r.gateway));
    args.push('dev', nameOf(r.interfaceMac));
    if (r.source) args.push('src', formatIp(r.source));
    if (r.scope) args.push('scope', r.scope);
    if (r.metric) args.push('metric', String(r.metric));
    if (r.onlink) args.push('onlink');
    await busybox(`${r.field}: ${args.slice(4).join(' ')}`, args);
  }

  for (const n of plan.neighbors) {
    const args = ['arp', '-i', nameOf(n.interfaceMac), '-s', formatIp(n.ip), n.mac, ...(n.permanent ? [] : ['temp'])];
    await busybox(`${n.field}: ${formatIp(n.ip)} lladdr ${n.mac} on ${nameOf(n.interfaceMac)}`, args);
  }
  return plan.interfaces.map((i) => ({ mac: i.mac, name: nameOf(i.mac) }));
}
