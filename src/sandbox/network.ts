import net from 'node:net';
import type { AgentClient, HostsEntry } from '../agent/host/client.js';
import { VrunError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { cachedResult, cniAdd, defaultCniEnv, loadNetworkFor, type Attachment, type CniEnv } from '../network/cni.js';
import type { NetworkConfigList } from '../network/cni-config.js';
import { teardownPodNetwork } from '../network/leftovers.js';
import { createNetns, netnsPath } from '../network/netns.js';
import { attachPodNics, guestNetworkOf, podIps, type AttachedNic } from '../network/pod-nics.js';
import { resolveHostPorts } from '../network/ports.js';
import { defaultTapName } from '../network/tap.js';
import type { NetworkSpec } from './run-config.js';

/**
 * A CLI sandbox's network, from `vrun run`'s flags to the guest: a namespace per sandbox, the CNI network
 * list ADDed to it (the standard plugins: bridge, host-local, portmap, firewall), a tap next to the CNI
 * interface, and the guest told its address, routes, hosts and DNS. Everything is found again from the
 * sandbox id and its NetworkSpec alone, so `vrun rm` tears it down after the sandbox process died.
 */
const IFNAME = 'eth0';

export function isNetworked(spec: NetworkSpec | undefined): spec is NetworkSpec {
  return spec !== undefined && spec.name !== 'none';
}

function attachment(sandboxId: string, spec: NetworkSpec): Attachment {
  return { containerId: sandboxId, netns: netnsPath(sandboxId), ifname: IFNAME, portMappings: spec.ports };
}

/**
 * The CLI's checks before the sandbox exists, so bad input leaves nothing behind: the network exists (the
 * default one is written on first use), and every host port is free (a free one picked for `-p CTRPORT`).
 */
export async function prepareNetwork(spec: NetworkSpec | undefined, env: CniEnv = defaultCniEnv()): Promise<NetworkSpec | undefined> {
  if (!isNetworked(spec)) return spec;
  loadNetworkFor(env, spec.name);
  return { ...spec, ports: await resolveHostPorts(spec.ports) };
}

export interface PodNetwork {
  nics: AttachedNic[];
  ips: string[];
}

/** Makes the namespace, ADDs the network and attaches the tap; on failure what was made is taken down again. */
export async function connectPod(sandboxId: string, spec: NetworkSpec, log: Logger, env: CniEnv = defaultCniEnv()): Promise<PodNetwork> {
  const list = loadNetworkFor(env, spec.name);
  try {
    const netns = await createNetns(sandboxId);
    await cniAdd(env, list, attachment(sandboxId, spec));
    const nics = await attachPodNics(netns, [IFNAME]);
    const ips = podIps(nics);
    log.info({ network: spec.name, ips, ports: spec.ports.map((p) => `${p.hostIP || '0.0.0.0'}:${p.hostPort}->${p.containerPort}/${p.protocol}`) }, 'pod network attached');
    return { nics, ips };
  } catch (e) {
    await disconnectList(sandboxId, spec, list, env).catch((err: unknown) => log.warn({ err: String(err) }, 'undoing a half-made pod network failed'));
    throw e;
  }
}

function disconnectList(sandboxId: string, spec: NetworkSpec, list: NetworkConfigList, env: CniEnv): Promise<void> {
  return teardownPodNetwork(env, sandboxId, [{ list, attachment: attachment(sandboxId, spec), tap: defaultTapName(IFNAME) }]);
}

/**
 * Releases everything connectPod made (tap, CNI DEL: IP, veth, rules; the namespace); safe to repeat and
 * after a crash. Run once the VMM is gone: the tap is its.
 */
export async function disconnectPod(sandboxId: string, spec: NetworkSpec | undefined, env: CniEnv = defaultCniEnv()): Promise<void> {
  if (!isNetworked(spec)) return;
  let list: NetworkConfigList;
  try {
    list = loadNetworkFor(env, spec.name);
  } catch (e) {
    throw new VrunError(`cannot release the container's network: ${(e as Error).message}`, { kind: 'precondition' });
  }
  // Without a cached ADD result the ADD never completed, and its own rollback already ran DEL: a DEL that
  // fails again (a config the plugins reject outright) holds nothing, so it must not keep the record forever.
  const added = cachedResult(env, list.name, { containerId: sandboxId, ifname: IFNAME }) !== undefined;
  try {
    await disconnectList(sandboxId, spec, list, env);
  } catch (e) {
    if (added) throw e;
  }
}

/** The host's nameservers for a guest without --dns: loopback ones (a local resolver) are unreachable from it, as podman drops them. */
export function hostResolvConf(text: string): { nameservers: string[]; searches: string[]; options: string[] } {
  const nameservers: string[] = [];
  let searches: string[] = [];
  let options: string[] = [];
  for (const raw of text.split('\n').slice(0, 200)) {
    const [key, ...words] = raw.replace(/[#;].*$/, '').trim().split(/\s+/);
    if (key === 'nameserver' && words[0]) {
      const ip = words[0].replace(/%.*$/, '');
      if (net.isIP(ip) !== 0 && !ip.startsWith('127.') && ip !== '::1' && nameservers.length < 3) nameservers.push(ip);
    } else if ((key === 'search' || key === 'domain') && words.length > 0) {
      searches = words.filter((w) => /^[A-Za-z0-9_.-]{1,253}$/.test(w)).slice(0, 6);
    } else if (key === 'options') {
      options = words.filter((w) => /^[A-Za-z0-9_.:-]{1,64}$/.test(w)).slice(0, 16);
    }
  }
  return { nameservers, searches, options };
}

/**
 * Tells the guest its network before the container exists: links, routes and neighbours (for a pod with a
 * NIC), its hostname, /etc/hosts (its own name on its first address, then --add-host), /etc/resolv.conf. The calls go out
 * together: under TCG every round trip through the guest costs 100-200 ms.
 */
export async function configureGuestNetwork(
  agent: AgentClient,
  pod: PodNetwork | undefined,
  spec: NetworkSpec | undefined,
  guest: { hostname: string; hostResolvConf: string },
): Promise<void> {
  const { hostname } = guest;
  const hosts: HostsEntry[] = [];
  if (pod?.ips[0]) hosts.push({ ip: pod.ips[0], names: [hostname] });
  for (const h of spec?.addHosts ?? []) hosts.push({ ip: h.ip, names: [h.name] });
  const dns =
    spec && spec.dns.length > 0
      ? { nameservers: spec.dns, searches: spec.dnsSearch, options: spec.dnsOptions }
      : (() => {
          const host = hostResolvConf(guest.hostResolvConf);
          return { nameservers: host.nameservers, searches: spec?.dnsSearch.length ? spec.dnsSearch : host.searches, options: spec?.dnsOptions.length ? spec.dnsOptions : host.options };
        })();
  // SetHostname writes /etc/hostname (bound into the container) and a default hosts file, which SetHosts replaces.
  const named = agent.setHostname(hostname).then(() => agent.setHosts(hosts));
  await Promise.all([pod ? agent.configureNetwork(guestNetworkOf(pod.nics)) : undefined, named, agent.setDns(dns)]);
}

