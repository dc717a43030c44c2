import { VrunError } from '../common/errors.js';
import { run, runChecked } from './exec.js';
import { IFNAME_RE, readAddresses, readLink, readRoutes, type IpAddress, type LinkInfo, type Route } from './link-info.js';

/**
 * Kata's `tcfilter` model, host side: next to the interface a CNI plugin made in the pod's namespace, a tap
 * device with the same MTU, and tc mirred redirects both ways, so every frame the veth receives leaves through
 * the tap (to the guest) and back. The veth keeps its addresses and the guest NIC takes its MAC, so the CNI
 * plugins' view (ARP, IPAM, iptables on the host) stays true.
 *
 * The tap is persistent (`ip tuntap add`; the addon has no TUNSETIFF) with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR.
 * The VMM opens it by name from inside the namespace: QEMU as `-netdev tap,ifname=TAP,script=no,downscript=no,
 * vhost=off` (it does open(/dev/net/tun) + TUNSETIFF itself), run by the jailer with --netns; the tap's owner is
 * set to the jail's uid because TUNSETIFF on a persistent tap without CAP_NET_ADMIN needs the owner's uid/gid.
 */
export interface TapOptions {
  /** Default: `tap_<veth>`, cut to the 15 characters an interface name has. */
  tapName?: string;
  /** uid (and gid) allowed to attach to the tap without CAP_NET_ADMIN: the jailed VMM's. */
  owner?: { uid: number; gid?: number };
  multiQueue?: boolean;
}

export type Classifier = 'matchall' | 'u32';

/** What the guest NIC needs, and what teardown needs. */
export interface PodNic {
  netns: string;
  veth: string;
  tap: string;
  /** The veth's MAC: the guest NIC must use it (the bridge and the neighbours know it). */
  mac: string;
  mtu: number;
  addresses: IpAddress[];
  routes: Route[];
  classifier: Classifier;
}

export function defaultTapName(veth: string): string {
  return `tap_${veth}`.slice(0, 15);
}

/**
 * The classifier the redirects use. matchall is the one meant for "everything", but kernels built without
 * CONFIG_NET_CLS_MATCHALL (this host's) only have u32; a u32 key matching 0 bits of byte 0 also matches all.
 */
function filterArgs(classifier: Classifier, from: string, to: string): string[] {
  const match = classifier === 'matchall' ? ['matchall'] : ['u32', 'match', 'u8', '0', '0'];
  return ['tc', 'filter', 'add', 'dev', from, 'parent', 'ffff:', 'protocol', 'all', ...match, 'action', 'mirred', 'egress', 'redirect', 'dev', to];
}

async function addRedirect(netns: string, from: string, to: string, prefer: Classifier): Promise<Classifier> {
  const r = await run(filterArgs(prefer, from, to), { netns });
  if (r.code === 0) return prefer;
  if (prefer === 'matchall' && /classifier not found|Unknown filter/i.test(r.stderr)) return addRedirect(netns, from, to, 'u32');
  throw new VrunError(`redirecting ${from} to ${to} with tc failed: ${r.stderr.trim() || `tc exited with ${r.code}`}`, { kind: 'internal' });
}

export async function attachTap(netns: string, veth: string, opts: TapOptions = {}): Promise<PodNic> {
  const tap = opts.tapName ?? defaultTapName(veth);
  if (!IFNAME_RE.test(tap)) throw new VrunError(`tap name ${JSON.stringify(tap)} is not a valid interface name`, { kind: 'invalid' });
  const link: LinkInfo = await readLink(netns, veth);
  if (link.kind === 'tun') throw new VrunError(`${veth} is itself a tun/tap device: expected the interface a CNI plugin made`, { kind: 'invalid' });
  const add = ['ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap', 'vnet_hdr'];
  if (opts.multiQueue) add.push('multi_queue');
  if (opts.owner) {
    const ids = [opts.owner.uid, opts.owner.gid ?? 0];
    if (!ids.every((n) => Number.isInteger(n) && n >= 0 && n < 2 ** 32 - 1)) throw new VrunError(`tap owner ${JSON.stringify(opts.owner)} is not a uid/gid`, { kind: 'invalid' });
    add.push('user', String(opts.owner.uid));
    if (opts.owner.gid !== undefined) add.push('group', String(opts.owner.gid));
  }
  await runChecked(add, { netns, what: `creating tap ${tap}` });
  let vethQdisc = false;
  try {
    // addrgenmode none: no IPv6 link-local address on the tap, so the namespace's own stack sends nothing
    // (router solicitations, MLD) into the guest; only the pod's traffic crosses.
    await runChecked(['ip', 'link', 'set', 'dev', tap, 'mtu', String(link.mtu), 'addrgenmode', 'none', 'up'], { netns, what: `setting up tap ${tap}` });
    await runChecked(['tc', 'qdisc', 'add', 'dev', veth, 'ingress'], { netns, what: `adding an ingress qdisc to ${veth}` });
    vethQdisc = true;
    await runChecked(['tc', 'qdisc', 'add', 'dev', tap, 'ingress'], { netns, what: `adding an ingress qdisc to ${tap}` });
    const classifier = await addRedirect(netns, veth, tap, 'matchall');
    await addRedirect(netns, tap, veth, classifier);
    const [addresses, routes] = [await readAddresses(netns, veth), await readRoutes(netns, veth)];
    return { netns, veth, tap, mac: link.mac, mtu: link.mtu, addresses, routes, classifier };
  } catch (e) {
    // Only what this call made: an ingress qdisc that was already on the veth is someone else's.
    await run(['ip', 'link', 'del', 'dev', tap], { netns }).catch(() => undefined);
    if (vethQdisc) await run(['tc', 'qdisc', 'del', 'dev', veth, 'ingress'], { netns }).catch(() => undefined);
    throw e;
  }
}

/** Removes the tap (its qdisc and filter go with it) and the veth's ingress qdisc; what is gone already is fine. */
export async function detachTap(netns: string, veth: string, tap: string): Promise<void> {
  const del = await run(['ip', 'link', 'del', 'dev', tap], { netns });
  if (del.code !== 0 && !/Cannot find device|does not exist/.test(del.stderr)) {
    throw new VrunError(`deleting tap ${tap}: ${del.stderr.trim() || `ip exited with ${del.code}`}`, { kind: 'internal' });
  }
  const q = await run(['tc', 'qdisc', 'del', 'dev', veth, 'ingress'], { netns });
  if (q.code !== 0 && !/Cannot find device|Invalid handle|No such file|not find|does not exist/i.test(q.stderr)) {
    throw new VrunError(`removing the ingress qdisc of ${veth}: ${q.stderr.trim() || `tc exited with ${q.code}`}`, { kind: 'internal' });
  }
}

/**
 * Waits until `dev` is operationally up. A persistent tap has no carrier until the VMM attaches to it, and
 * every frame redirected to it before then is dropped, so a caller can wait for this before it reports the
 * pod's network ready. Resolves false on timeout.
 */
export async function waitForCarrier(netns: string, dev: string, timeoutMs = 3000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (true) {
    const r = await run(['ip', '-j', 'link', 'show', 'dev', dev], { netns });
    if (r.code === 0 && (JSON.parse(r.stdout) as { operstate?: unknown }[])[0]?.operstate === 'UP') return true;
    if (Date.now() > end) return false;
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** Packets the ingress redirect on `dev` has moved: the evidence that frames flow. */
export async function redirectedPackets(netns: string, dev: string): Promise<number> {
  const out = await runChecked(['tc', '-s', '-j', 'filter', 'show', 'dev', dev, 'parent', 'ffff:'], { netns, what: `reading tc counters of ${dev}` });
  let total = 0;
  let filters: unknown;
  try {
    filters = JSON.parse(out);
  } catch {
    throw new VrunError(`tc printed no JSON for the filters of ${dev}`, { kind: 'internal' });
  }
  for (const f of Array.isArray(filters) ? (filters as { options?: { actions?: unknown } }[]) : []) {
    for (const a of Array.isArray(f.options?.actions) ? (f.options.actions as { kind?: unknown; stats?: { packets?: unknown } }[]) : []) {
      if (a.kind === 'mirred' && typeof a.stats?.packets === 'number') total += a.stats.packets;
    }
  }
  return total;
}
