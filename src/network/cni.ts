import fs from 'node:fs';
import path from 'node:path';
import { VrunError } from '../common/errors.js';
import { checkId } from '../common/ids.js';
import { vrunRoot } from '../common/paths.js';
import { defaultConfDir, loadNetwork, type DefaultNetworkOptions, type NetworkConfigList } from './cni-config.js';
import { execPlugin, findPlugin, type PluginCall, type PluginHost } from './cni-plugin.js';
import { parseCniResult, type CniResult } from './cni-result.js';
import { IFNAME_RE } from './link-info.js';
import { toCniPortMappings, type PortMapping } from './ports.js';

/**
 * A network config list applied to one attachment (container, netns, interface), as libcni's
 * AddNetworkList/DelNetworkList/CheckNetworkList do it: plugins in order on ADD, each getting the previous
 * one's result as prevResult, in reverse order on DEL. The ADD result is cached on disk, because DEL and
 * CHECK must be given it and `vrun rm` may run in another process, or after a reboot (hence $VRUN_ROOT, not
 * /run: host-local's allocations in /var/lib/cni survive a reboot too, and only a DEL frees them).
 */
export interface CniEnv extends PluginHost {
  confDir: string;
  cacheDir: string;
  /** How the `vrun` network is written when it does not exist yet. */
  defaultNetwork?: DefaultNetworkOptions;
}

export function defaultCniEnv(): CniEnv {
  const dirs = process.env.VRUN_CNI_PATH?.split(':').filter(Boolean);
  return { pluginDirs: dirs ?? ['/usr/lib/cni', '/opt/cni/bin'], confDir: defaultConfDir(), cacheDir: path.join(vrunRoot(), 'cni', 'results') };
}

export interface Attachment {
  containerId: string;
  /** nsfs path of the pod's network namespace. */
  netns: string;
  ifname: string;
  portMappings?: readonly PortMapping[];
  args?: Record<string, string>;
}

export function loadNetworkFor(env: CniEnv, name: string): NetworkConfigList {
  return loadNetwork(env.confDir, name, env.defaultNetwork);
}

interface CacheEntry {
  kind: 'vrun-cni-cache-v1';
  containerId: string;
  ifname: string;
  network: string;
  netns: string;
  result: Record<string, unknown>;
  /** DEL needs the same runtime config as ADD: portmap deletes nothing without its portMappings. */
  portMappings: CniPortMapping[];
}

type CniPortMapping = ReturnType<typeof toCniPortMappings>[number];

function cacheFile(env: CniEnv, network: string, a: Pick<Attachment, 'containerId' | 'ifname'>): string {
  return path.join(env.cacheDir, `${network}-${a.containerId}-${a.ifname}.json`);
}

function checkAttachment(a: Attachment): void {
  checkId('container id', a.containerId);
  if (!IFNAME_RE.test(a.ifname)) throw new VrunError(`interface name ${JSON.stringify(a.ifname)} is not valid (at most 15 letters, digits, "_", "." or "-")`, { kind: 'invalid' });
  if (a.netns !== '' && !path.isAbsolute(a.netns)) throw new VrunError(`netns ${JSON.stringify(a.netns)} must be an absolute path`, { kind: 'invalid' });
}

/** One plugin's stdin: its own config plus the list's name and version, prevResult and declared runtime config. */
function pluginConfig(list: NetworkConfigList, index: number, portMappings: CniPortMapping[], prev: Record<string, unknown> | undefined): Record<string, unknown> {
  const plugin = list.plugins[index];
  if (!plugin) throw new Error(`plugin ${index} missing`);
  const conf: Record<string, unknown> = { ...plugin, cniVersion: list.cniVersion, name: list.name };
  if (prev) conf.prevResult = prev;
  const runtimeConfig: Record<string, unknown> = {};
  if (plugin.capabilities?.portMappings === true && portMappings.length > 0) runtimeConfig.portMappings = portMappings;
  if (Object.keys(runtimeConfig).length > 0) conf.runtimeConfig = runtimeConfig;
  return conf;
}

function call(command: PluginCall['command'], a: Attachment): PluginCall {
  const c: PluginCall = { command, containerId: a.containerId, netns: a.netns, ifname: a.ifname };
  if (a.args) c.args = a.args;
  return c;
}

/**
 * Attaches the pod to the network. Every plugin binary is looked up first, so a config naming a missing
 * plugin fails before anything is made; when a plugin fails half-way, the list is DEL'd again (as podman and
 * nerdctl do) so no IP, veth or rule stays behind, and the error is the failing plugin's.
 */
export async function cniAdd(env: CniEnv, list: NetworkConfigList, a: Attachment): Promise<CniResult> {
  checkAttachment(a);
  // A second ADD would fail on the existing interface, and its rollback DEL would then tear down the first.
  if (fs.existsSync(cacheFile(env, list.name, a))) {
    throw new VrunError(`network "${list.name}": container ${a.containerId} is already attached as ${a.ifname} (DEL it first)`, { kind: 'exists' });
  }
  for (const p of list.plugins) findPlugin(env.pluginDirs, p.type, list.name);
  const portMappings = toCniPortMappings(a.portMappings ?? []);
  let prev: Record<string, unknown> | undefined;
  let result: CniResult | undefined;
  try {
    for (let i = 0; i < list.plugins.length; i++) {
      const out = await execPlugin(env, list.name, pluginConfig(list, i, portMappings, prev), call('ADD', a));
      result = parseCniResult(out, list.plugins[i]?.type ?? '?');
      prev = result.raw;
    }
  } catch (e) {
    await delList(env, list, a, portMappings, prev).catch(() => undefined);
    throw e;
  }
  if (!result) throw new Error('empty plugin list');
  const entry: CacheEntry = { kind: 'vrun-cni-cache-v1', containerId: a.containerId, ifname: a.ifname, network: list.name, netns: a.netns, result: result.raw, portMappings };
  fs.mkdirSync(env.cacheDir, { recursive: true, mode: 0o700 });
  const file = cacheFile(env, list.name, a);
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(entry), { mode: 0o600 });
  fs.renameSync(`${file}.tmp`, file);
  return result;
}

function readCache(env: CniEnv, network: string, a: Pick<Attachment, 'containerId' | 'ifname'>): { result: CniResult; portMappings: CniPortMapping[] } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(cacheFile(env, network, a), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const e = JSON.parse(text) as Partial<CacheEntry>;
    if (e.kind !== 'vrun-cni-cache-v1' || e.containerId !== a.containerId || e.ifname !== a.ifname) return undefined;
    const portMappings = Array.isArray(e.portMappings) ? e.portMappings.filter((m) => Number.isInteger(m?.hostPort) && Number.isInteger(m?.containerPort)) : [];
    return { result: parseCniResult(e.result, `cache of ${network}`), portMappings };
  } catch {
    return undefined;
  }
}

/** The cached ADD result, if the attachment was added and not deleted since. */
export function cachedResult(env: CniEnv, network: string, a: Pick<Attachment, 'containerId' | 'ifname'>): CniResult | undefined {
  return readCache(env, network, a)?.result;
}

/** Reverse order; every plugin runs even when one fails, so one broken plugin does not strand the others' state. */
async function delList(env: CniEnv, list: NetworkConfigList, a: Attachment, portMappings: CniPortMapping[], prev: Record<string, unknown> | undefined): Promise<void> {
  const errors: VrunError[] = [];
  for (let i = list.plugins.length - 1; i >= 0; i--) {
    try {
      await execPlugin(env, list.name, pluginConfig(list, i, portMappings, prev), call('DEL', a));
    } catch (e) {
      errors.push(e instanceof VrunError ? e : new VrunError(String(e)));
    }
  }
  if (errors.length > 0) {
    const more = errors.length > 1 ? ` (and ${errors.length - 1} more plugin error(s))` : '';
    throw new VrunError(`${errors[0]?.message}${more}`, { kind: errors[0]?.kind ?? 'internal' });
  }
}

/**
 * Detaches the pod. Safe to repeat and to call after the namespace is gone (CNI_NETNS is then empty and the
 * plugins release what they hold on the host side). The cache goes only once every plugin succeeded, so a
 * failed DEL can be retried with the same prevResult.
 */
export async function cniDel(env: CniEnv, list: NetworkConfigList, a: Attachment): Promise<void> {
  checkAttachment(a);
  const att = { ...a, netns: a.netns !== '' && fs.existsSync(a.netns) ? a.netns : '' };
  const cached = readCache(env, list.name, a);
  const portMappings = cached?.portMappings ?? toCniPortMappings(a.portMappings ?? []);
  await delList(env, list, att, portMappings, cached?.result.raw);
  fs.rmSync(cacheFile(env, list.name, a), { force: true });
}

/** CHECK (CNI 0.4.0+): every plugin confirms the attachment is still as it made it. */
export async function cniCheck(env: CniEnv, list: NetworkConfigList, a: Attachment): Promise<void> {
  checkAttachment(a);
  if (list.cniVersion === '0.3.0' || list.cniVersion === '0.3.1') throw new VrunError(`network "${list.name}": CHECK needs cniVersion 0.4.0 or later (it is ${list.cniVersion})`, { kind: 'precondition' });
  if (list.disableCheck) return;
  const cached = readCache(env, list.name, a);
  if (!cached) throw new VrunError(`network "${list.name}": no cached ADD result for container ${a.containerId} ${a.ifname}`, { kind: 'not-found' });
  for (let i = 0; i < list.plugins.length; i++) await execPlugin(env, list.name, pluginConfig(list, i, cached.portMappings, cached.result.raw), call('CHECK', a));
}
