import { VrunError, errorMessage } from '../common/errors.js';
import { loadNative } from '../common/native.js';
import { run, runChecked } from './exec.js';
import { IFNAME_RE, readAddresses, readLink, readRoutes, type IpAddress, type LinkInfo, type Route } from './link-info.js';

/**
 * Kata's `tcfilter` model, host side: next to the interface a CNI plugin made in the pod's namespace, a tap
 * device with the same MTU, and tc mirred redirects both ways, so every frame the veth receives leaves through
 * the tap (to the guest) and back. The veth keeps its addresses and the guest NIC takes its MAC, so the CNI
 * plugins' view (ARP, IPAM, iptables on the host) stays true.
 *
 * The tap is persistent (TUNSETPERSIST) with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR.
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

interface TapAttachNative {
  tapAttach(netns: string, veth: string, tap: string, opts: { mtu: number; uid?: number; gid?: number; multiQueue?: boolean; classifier?: Classifier }): Classifier;
  tapDetach(netns: string, veth: string, tap: string): void;
}

function native(): TapAttachNative {
  const mod = loadNative<Partial<TapAttachNative>>();
  if (typeof mod.tapAttach !== 'function' || typeof mod.tapDetach !== 'function') {
    throw new VrunError('the native addon is older than this vrun (it lacks tapAttach): rebuild it with "npx node-gyp rebuild --directory native"');
  }
  return mod as TapAttachNative;
}

/**
 * Makes the tap and the redirects in one native call (native/src/tap_attach.cc, rtnetlink from a thread in the
 * namespace; `ip` and `tc` cost a process each, 40 to 80 ms apiece on a loaded host). The redirects use matchall,
 * the classifier meant for "everything", or on kernels built without CONFIG_NET_CLS_MATCHALL (this host's) u32
 * with a key that compares 0 bits of byte 0, which matches every frame too. On failure nothing it made is left.
 */
export async function attachTap(netns: string, veth: string, opts: TapOptions = {}): Promise<PodNic> {
  const tap = opts.tapName ?? defaultTapName(veth);
  if (!IFNAME_RE.test(tap)) throw new VrunError(`tap name ${JSON.stringify(tap)} is not a valid interface name`, { kind: 'invalid' });
  const link: LinkInfo = await readLink(netns, veth);
  if (link.kind === 'tun') throw new VrunError(`${veth} is itself a tun/tap device: expected the interface a CNI plugin made`, { kind: 'invalid' });
  if (opts.owner) {
    const ids = [opts.owner.uid, opts.owner.gid ?? 0];
    if (!ids.every((n) => Number.isInteger(n) && n >= 0 && n < 2 ** 32 - 1)) throw new VrunError(`tap owner ${JSON.stringify(opts.owner)} is not a uid/gid`, { kind: 'invalid' });
  }
  let classifier: Classifier;
  try {
    classifier = native().tapAttach(netns, veth, tap, { mtu: link.mtu, uid: opts.owner?.uid, gid: opts.owner?.gid, multiQueue: opts.multiQueue });
  } catch (err) {
    throw new VrunError(`attaching tap ${tap} to ${veth} in ${netns}: ${errorMessage(err)}`, { kind: 'internal' });
  }
  try {
    const [addresses, routes] = await Promise.all([readAddresses(netns, veth), readRoutes(netns, veth)]);
    return { netns, veth, tap, mac: link.mac, mtu: link.mtu, addresses, routes, classifier };
  } catch (err) {
    await detachTap(netns, veth, tap).catch(() => undefined);
    throw err;
  }
}

/** Removes the tap (its qdisc and filters go with it) and the veth's ingress qdisc; what is gone already is fine. */
export async function detachTap(netns: string, veth: string, tap: string): Promise<void> {
  try {
    native().tapDetach(netns, veth, tap);
  } catch (err) {
    // A namespace that is gone took the tap and the veth with it.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && (err as NodeJS.ErrnoException).syscall === 'open(netns)') return;
    throw new VrunError(`detaching tap ${tap} from ${veth}: ${errorMessage(err)}`, { kind: 'internal' });
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
