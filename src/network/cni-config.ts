import fs from 'node:fs';
import path from 'node:path';
import { VrunError } from '../common/errors.js';

/**
 * Network configs (CNI .conflist, or a single-plugin .conf) found by network name in vrun's config directory,
 * /etc/vrun/cni/net.d by default. Not /etc/cni/net.d: containerd's CRI plugin takes the first file there as the
 * cluster's pod network, so vrun's bridge must not appear in it; and not under $VRUN_ROOT, which holds data
 * (images, caches), not config an operator edits.
 */
export interface PluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

export interface NetworkConfigList {
  cniVersion: string;
  name: string;
  disableCheck?: boolean;
  plugins: PluginConf[];
}

export const DEFAULT_NETWORK = 'vrun';
export const SUPPORTED_CNI_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0'];
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const MAX_CONFIG_BYTES = 1 << 20;

export function defaultConfDir(): string {
  return process.env.VRUN_CNI_CONF_DIR ?? '/etc/vrun/cni/net.d';
}

export interface DefaultNetworkOptions {
  /**
   * 10.90.0.0/16 by default: not podman's default (10.88.0.0/16) nor the pool its `network create` takes first
   * (10.89.0.0/16), not Docker's (172.17.0.0/16, then 172.18-31 and 192.168/16), and outside the usual
   * Kubernetes ranges (10.244/16 flannel, 10.42-43 k3s, 10.96.0.0/12 services).
   */
  subnet?: string;
  bridge?: string;
  /** host-local's allocation directory (default /var/lib/cni/networks). */
  dataDir?: string;
}

/** The `vrun` network: a NAT'd bridge like podman's default, with port mappings and the FORWARD rules. */
export function defaultNetworkConfList(opts: DefaultNetworkOptions = {}): NetworkConfigList {
  const ipam: Record<string, unknown> = { type: 'host-local', ranges: [[{ subnet: opts.subnet ?? '10.90.0.0/16' }]], routes: [{ dst: '0.0.0.0/0' }] };
  if (opts.dataDir) ipam.dataDir = opts.dataDir;
  return {
    cniVersion: '1.0.0',
    name: DEFAULT_NETWORK,
    plugins: [
      { type: 'bridge', bridge: opts.bridge ?? 'vrun0', isGateway: true, ipMasq: true, hairpinMode: true, ipam },
      { type: 'portmap', capabilities: { portMappings: true } },
      { type: 'firewall' },
    ],
  };
}

/** Parses and checks a .conflist, or a .conf (one plugin at the top level, as libcni still accepts). */
export function parseConfList(text: string, source: string): NetworkConfigList {
  const fail = (why: string): never => {
    throw new VrunError(`network config ${source}: ${why}`, { kind: 'invalid' });
  };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return fail(`not JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return fail('not a JSON object');
  const o = v as Record<string, unknown>;
  if (typeof o.name !== 'string' || !NAME_RE.test(o.name)) return fail(`"name" ${JSON.stringify(o.name)} is not a network name (letters, digits, "_", "." and "-")`);
  if (typeof o.cniVersion !== 'string' || !SUPPORTED_CNI_VERSIONS.includes(o.cniVersion)) {
    return fail(`"cniVersion" ${JSON.stringify(o.cniVersion)} is not one vrun speaks (${SUPPORTED_CNI_VERSIONS.join(', ')})`);
  }
  let plugins: unknown;
  if (o.plugins !== undefined) plugins = o.plugins;
  else if (typeof o.type === 'string') {
    const { cniVersion: _v, name: _n, ...single } = o;
    plugins = [single];
  } else return fail('has neither "plugins" nor a plugin "type"');
  if (!Array.isArray(plugins) || plugins.length === 0 || plugins.length > 32) return fail('"plugins" must be a list of 1 to 32 plugin configs');
  plugins.forEach((p: unknown, i) => {
    if (typeof p !== 'object' || p === null || Array.isArray(p)) fail(`plugin ${i} is not an object`);
    const t = (p as Record<string, unknown>).type;
    if (typeof t !== 'string' || t === '') fail(`plugin ${i} has no "type"`);
  });
  const list: NetworkConfigList = { cniVersion: o.cniVersion, name: o.name, plugins: plugins as PluginConf[] };
  if (o.disableCheck === true) list.disableCheck = true;
  return list;
}

/**
 * The network called `name` in `confDir`. Files are read in name order and the first one naming the network
 * wins, as libcni does; a broken file does not hide the others but is named if the network is not found. The
 * default network is written on first use, so `vrun run` works on a fresh host.
 */
export function loadNetwork(confDir: string, name: string, defaults: DefaultNetworkOptions = {}): NetworkConfigList {
  if (!NAME_RE.test(name)) throw new VrunError(`network name ${JSON.stringify(name)} is not valid (letters, digits, "_", "." and "-")`, { kind: 'invalid' });
  const found = scan(confDir);
  const hit = found.lists.find((l) => l.name === name);
  if (hit) return hit;
  if (name === DEFAULT_NETWORK) return writeDefaultNetwork(confDir, defaults);
  const known = [...new Set(found.lists.map((l) => l.name))];
  const broken = found.broken.length > 0 ? `; unreadable: ${found.broken.join('; ')}` : '';
  throw new VrunError(`network "${name}" not found in ${confDir} (known: ${known.join(', ') || 'none'}${broken})`, { kind: 'not-found' });
}

/**
 * Every network in `confDir` that `--network` accepts (the first file naming a network wins, as in
 * loadNetwork), with the default one even before it was written, and the files that could not be read.
 */
export function listNetworks(confDir: string, defaults: DefaultNetworkOptions = {}): { networks: { list: NetworkConfigList; file?: string }[]; broken: string[] } {
  const found = scan(confDir);
  const networks: { list: NetworkConfigList; file?: string }[] = [];
  for (const [i, list] of found.lists.entries()) {
    if (!networks.some((n) => n.list.name === list.name)) networks.push({ list, file: found.files[i] });
  }
  if (!networks.some((n) => n.list.name === DEFAULT_NETWORK)) networks.unshift({ list: defaultNetworkConfList(defaults) });
  return { networks, broken: found.broken };
}

function scan(confDir: string): { lists: NetworkConfigList[]; files: string[]; broken: string[] } {
  let files: string[];
  try {
    files = fs.readdirSync(confDir).filter((f) => /\.(conflist|conf|json)$/.test(f)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { lists: [], files: [], broken: [] };
    throw e;
  }
  const lists: NetworkConfigList[] = [];
  const listFiles: string[] = [];
  const broken: string[] = [];
  for (const f of files) {
    const file = path.join(confDir, f);
    try {
      if (fs.statSync(file).size > MAX_CONFIG_BYTES) throw new VrunError(`network config ${file}: larger than ${MAX_CONFIG_BYTES} bytes`);
      lists.push(parseConfList(fs.readFileSync(file, 'utf8'), file));
      listFiles.push(file);
    } catch (e) {
      broken.push((e as Error).message);
    }
  }
  return { lists, files: listFiles, broken };
}

function writeDefaultNetwork(confDir: string, defaults: DefaultNetworkOptions): NetworkConfigList {
  const list = defaultNetworkConfList(defaults);
  fs.mkdirSync(confDir, { recursive: true, mode: 0o755 });
  const file = path.join(confDir, `10-${DEFAULT_NETWORK}.conflist`);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(list, null, 2)}\n`, { mode: 0o644 });
  try {
    // link(2) fails if another vrun wrote it first; then theirs is the config.
    fs.linkSync(tmp, file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return parseConfList(fs.readFileSync(file, 'utf8'), file);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return list;
}
