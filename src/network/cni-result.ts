import net from 'node:net';
import { VrunError } from '../common/errors.js';

/**
 * The result a CNI plugin prints on ADD (spec 0.3.0 to 1.0.0: interfaces, ips, routes, dns), checked before
 * anything trusts it. The plugin is someone else's binary run on operator config, so a wrong shape is an
 * error naming the plugin and the field, and every list and string is bounded.
 */
export interface CniInterface {
  name: string;
  mac?: string;
  /** The netns path for interfaces inside the pod; absent for host-side ones (the bridge, the host veth). */
  sandbox?: string;
}

export interface CniIp {
  family: 4 | 6;
  /** Without the prefix. */
  address: string;
  prefixLength: number;
  gateway?: string;
  /** Index into interfaces. */
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
}

export interface CniDns {
  nameservers: string[];
  domain?: string;
  search: string[];
  options: string[];
}

export interface CniResult {
  cniVersion: string;
  interfaces: CniInterface[];
  ips: CniIp[];
  routes: CniRoute[];
  dns: CniDns;
  /** What the plugin printed, parsed: the next plugin's prevResult and the cache keep it verbatim. */
  raw: Record<string, unknown>;
}

const MAX_ITEMS = 64;
const MAX_STRING = 256;

export function parseCniResult(value: unknown, plugin: string): CniResult {
  const fail = (what: string, v: unknown): never => {
    const shown = JSON.stringify(v) ?? String(v);
    throw new VrunError(`CNI plugin "${plugin}" printed a result with ${what}: ${shown.length > 100 ? `${shown.slice(0, 100)}…` : shown}`, { kind: 'internal' });
  };
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const list = (v: unknown, what: string): unknown[] => {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.length > MAX_ITEMS) return fail(`${what} that is not a list of at most ${MAX_ITEMS}`, v);
    return v;
  };
  const str = (v: unknown, what: string): string => (typeof v === 'string' && v.length <= MAX_STRING ? v : fail(`a bad ${what}`, v));
  const cidr = (v: unknown, what: string): [string, number, 4 | 6] => {
    const s = str(v, what);
    const [ip = '', len = '', extra] = s.split('/');
    const family = net.isIP(ip);
    if (extra !== undefined || family === 0 || !/^\d{1,3}$/.test(len) || Number(len) > (family === 4 ? 32 : 128)) fail(`a bad ${what}`, v);
    return [ip, Number(len), family as 4 | 6];
  };
  const ipAddr = (v: unknown, what: string): string => (net.isIP(str(v, what)) ? (v as string) : fail(`a bad ${what}`, v));

  if (!isObj(value)) return fail('no JSON object', value);
  const cniVersion = str(value.cniVersion, 'cniVersion');
  const interfaces = list(value.interfaces, 'interfaces').map((i): CniInterface => {
    if (!isObj(i)) return fail('an interface that is not an object', i);
    const out: CniInterface = { name: str(i.name, 'interface name') };
    if (i.mac !== undefined && i.mac !== '') out.mac = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5,19}$/.test(str(i.mac, 'MAC')) ? (i.mac as string).toLowerCase() : fail('a bad MAC', i.mac);
    if (i.sandbox !== undefined && i.sandbox !== '') out.sandbox = str(i.sandbox, 'interface sandbox');
    return out;
  });
  const ips = list(value.ips, 'ips').map((i): CniIp => {
    if (!isObj(i)) return fail('an ip entry that is not an object', i);
    const [address, prefixLength, family] = cidr(i.address, 'ip address');
    const out: CniIp = { family, address, prefixLength };
    if (i.gateway !== undefined && i.gateway !== '') out.gateway = ipAddr(i.gateway, 'gateway');
    if (i.interface !== undefined) {
      const n = i.interface;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n >= interfaces.length) fail('an interface index out of range', n);
      out.interface = n as number;
    }
    return out;
  });
  const routes = list(value.routes, 'routes').map((r): CniRoute => {
    if (!isObj(r)) return fail('a route that is not an object', r);
    const [ip, len] = cidr(r.dst, 'route destination');
    const out: CniRoute = { dst: `${ip}/${len}` };
    if (r.gw !== undefined && r.gw !== '') out.gw = ipAddr(r.gw, 'route gateway');
    return out;
  });
  const d = value.dns === undefined ? {} : isObj(value.dns) ? value.dns : fail('dns that is not an object', value.dns);
  const dns: CniDns = {
    nameservers: list(d.nameservers, 'dns nameservers').map((n) => ipAddr(n, 'nameserver')),
    search: list(d.search, 'dns search').map((s) => str(s, 'search domain')),
    options: list(d.options, 'dns options').map((s) => str(s, 'dns option')),
  };
  if (d.domain !== undefined && d.domain !== '') dns.domain = str(d.domain, 'dns domain');
  return { cniVersion, interfaces, ips, routes, dns, raw: value };
}
