import fs from 'node:fs';
import path from 'node:path';
import { checkId } from '../common/ids.js';
import { cachedResult, cniDel, type Attachment, type CniEnv } from './cni.js';
import type { NetworkConfigList } from './cni-config.js';
import { run } from './exec.js';
import { deleteNetns, isNetnsMounted, netnsPath } from './netns.js';
import { detachTap } from './tap.js';

/**
 * What a pod's networking can leave on the host, found from its ids alone, so `vrun rm` and tests can
 * assert it is gone and report what is not: the namespace file, taps still in it, host-local's IP files,
 * the iptables rules that name the container (bridge's ipMasq and portmap comment theirs with the id) or its
 * IPs (the firewall plugin's do not name it), and the CNI result cache.
 */
export interface NetworkLeftovers {
  netns: string[];
  taps: string[];
  ipAllocations: string[];
  rules: string[];
  cache: string[];
}

export interface LeftoverQuery {
  sandboxId: string;
  containerId: string;
  networks: readonly NetworkConfigList[];
  env: CniEnv;
  /** Pod IPs to look for in rules, besides those host-local still holds and the cache names. */
  ips?: readonly string[];
}

export function isClean(l: NetworkLeftovers): boolean {
  return Object.values(l).every((v: string[]) => v.length === 0);
}

/** Leftovers in one line for an error message. */
export function describeLeftovers(l: NetworkLeftovers): string {
  return (Object.entries(l) as [string, string[]][])
    .filter(([, v]) => v.length > 0)
    .map(([k, v]) => `${k}: ${v.slice(0, 5).join(', ')}${v.length > 5 ? ` (+${v.length - 5})` : ''}`)
    .join('; ');
}

/** host-local's allocation directory for a network: ipam.dataDir (default /var/lib/cni/networks) / name. */
export function hostLocalDirs(list: NetworkConfigList): string[] {
  const dirs: string[] = [];
  for (const p of list.plugins) {
    const ipam = p.ipam as { type?: unknown; dataDir?: unknown } | undefined;
    if (ipam?.type !== 'host-local') continue;
    dirs.push(path.join(typeof ipam.dataDir === 'string' ? ipam.dataDir : '/var/lib/cni/networks', list.name));
  }
  return dirs;
}

/** host-local writes one file per IP, named by the IP, holding "<container id>\r\n<ifname>". */
function allocationsOf(dir: string, containerId: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const n of names) {
    if (n === 'lock' || n.startsWith('last_reserved_ip')) continue;
    try {
      const first = fs.readFileSync(path.join(dir, n), 'utf8').split(/\r?\n/)[0]?.trim();
      if (first === containerId) out.push(path.join(dir, n));
    } catch {
      // released meanwhile
    }
  }
  return out;
}

async function rulesNaming(env: CniEnv, needles: readonly string[]): Promise<string[]> {
  const res = needles.map((n) => new RegExp(`(^|[^0-9A-Za-z.])${n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}($|[^0-9A-Za-z.])`));
  const out: string[] = [];
  for (const tool of ['iptables-save', 'ip6tables-save']) {
    const r = await run([tool], { netns: env.runIn, maxOutputBytes: 16 << 20 }).catch(() => undefined);
    if (!r || r.code !== 0) continue;
    for (const line of r.stdout.split('\n')) {
      if (line.startsWith('-A ') && res.some((re) => re.test(line))) out.push(line);
    }
  }
  return out;
}

async function tapsIn(file: string): Promise<string[]> {
  const r = await run(['ip', '-j', '-d', 'link', 'show'], { netns: file });
  if (r.code !== 0) return [];
  try {
    const links = JSON.parse(r.stdout) as { ifname?: unknown; linkinfo?: { info_kind?: unknown } }[];
    return links.filter((l) => l.linkinfo?.info_kind === 'tun' && typeof l.ifname === 'string').map((l) => `${file}:${String(l.ifname)}`);
  } catch {
    return [];
  }
}

export async function findLeftovers(q: LeftoverQuery): Promise<NetworkLeftovers> {
  checkId('container id', q.containerId);
  const file = netnsPath(q.sandboxId);
  const l: NetworkLeftovers = { netns: [], taps: [], ipAllocations: [], rules: [], cache: [] };
  if (fs.existsSync(file)) {
    l.netns.push(file);
    if (isNetnsMounted(file)) l.taps.push(...(await tapsIn(file)));
  }
  const ips = new Set(q.ips ?? []);
  for (const list of q.networks) {
    for (const dir of hostLocalDirs(list)) {
      for (const f of allocationsOf(dir, q.containerId)) {
        l.ipAllocations.push(f);
        ips.add(path.basename(f));
      }
    }
    for (const f of safeReaddir(q.env.cacheDir).filter((n) => n.startsWith(`${list.name}-${q.containerId}-`))) {
      l.cache.push(path.join(q.env.cacheDir, f));
      const ifname = f.slice(`${list.name}-${q.containerId}-`.length).replace(/\.json$/, '');
      for (const ip of cachedResult(q.env, list.name, { containerId: q.containerId, ifname })?.ips ?? []) ips.add(ip.address);
    }
  }
  l.rules = await rulesNaming(q.env, [q.containerId, ...ips]);
  return l;
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * The whole teardown, in the order that frees most if a step fails: the taps, CNI DEL of every attachment
 * (the primary cleanup: IPs, veths, rules), then the namespace, which goes even when a DEL failed (a retried
 * DEL works without it: host-local and the rule owners release by container id). The first error is thrown
 * at the end.
 */
export async function teardownPodNetwork(
  env: CniEnv,
  sandboxId: string,
  attachments: readonly { list: NetworkConfigList; attachment: Attachment; tap?: string }[],
): Promise<void> {
  const errors: unknown[] = [];
  for (const { attachment: a, tap } of attachments) {
    if (tap && isNetnsMounted(a.netns)) await detachTap(a.netns, a.ifname, tap).catch((e: unknown) => errors.push(e));
  }
  for (const { list, attachment } of [...attachments].reverse()) await cniDel(env, list, attachment).catch((e: unknown) => errors.push(e));
  await deleteNetns(sandboxId).catch((e: unknown) => errors.push(e));
  if (errors.length > 0) throw errors[0];
}
