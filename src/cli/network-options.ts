import net from 'node:net';
import { VrunError } from '../common/errors.js';
import { DEFAULT_NETWORK } from '../network/cni-config.js';
import { parsePortMappings } from '../network/ports.js';
import type { NetworkSpec } from '../sandbox/run-config.js';

/** The network flags of `vrun run`, Docker's spelling and limits (resolv.conf reads 3 nameservers, 6 domains). */
export interface NetworkFlags {
  network?: string;
  publish: string[];
  dns: string[];
  'dns-search': string[];
  'dns-option': string[];
  'add-host': string[];
}

const LABEL = '[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const HOSTNAME = new RegExp(`^${LABEL}(\\.${LABEL})*$`);
/** What resolv.conf can hold in one word. */
const DNS_WORD = /^[A-Za-z0-9_.:%-]{1,253}$/;
const DNS_OPTION = /^[A-Za-z0-9_.:-]{1,64}$/;

function invalid(msg: string): never {
  throw new VrunError(msg, { kind: 'invalid' });
}

const shown = (v: string) => JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v);

/** A kernel host name: RFC 1123 labels, at most 64 characters (the UTS field). */
export function parseHostname(value: string): string {
  if (value.length > 64 || !HOSTNAME.test(value)) invalid(`invalid value ${shown(value)} for --hostname: a host name is letters, digits and "-" in dot-separated labels, at most 64 characters`);
  return value;
}

/** --network's default is $VRUN_NETWORK when set (the test suite's is "none"), else the bridge. */
function networkName(flag: string | undefined): string {
  const value = flag ?? (process.env.VRUN_NETWORK || undefined);
  if (value === undefined || value === 'bridge' || value === 'default') return DEFAULT_NETWORK;
  if (value === 'host') invalid('--network host is not supported: the container runs in its own VM, with its own kernel and network stack (publish ports with -p)');
  if (value.startsWith('container:')) invalid('--network container:NAME is not supported: every vrun container has its own VM');
  return value;
}

function addHost(entry: string): { name: string; ip: string } {
  // Docker splits at the first ":" (an IPv6 address holds more) and takes "=" too.
  const sep = entry.search(/[:=]/);
  if (sep < 0) invalid(`invalid value ${shown(entry)} for --add-host: expected NAME:IP`);
  const name = entry.slice(0, sep);
  let ip = entry.slice(sep + 1);
  if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
  if (name.length > 253 || !HOSTNAME.test(name)) invalid(`invalid value ${shown(entry)} for --add-host: ${shown(name)} is not a host name`);
  if (ip === 'host-gateway') invalid(`--add-host ${shown(entry)}: host-gateway is not supported; give the address`);
  if (net.isIP(ip) === 0) invalid(`invalid value ${shown(entry)} for --add-host: ${shown(ip)} is not an IP address`);
  return { name, ip };
}

function limited(values: string[], flag: string, max: number, re: RegExp, what: string): string[] {
  if (values.length > max) invalid(`at most ${max} ${flag} values (${values.length} given)`);
  for (const v of values) if (!re.test(v)) invalid(`invalid value ${shown(v)} for ${flag}: ${what}`);
  return values;
}

/** Checks every network flag before anything is made; the network's existence and the host ports are checked later (see prepareNetwork). */
export function parseNetworkFlags(flags: NetworkFlags): NetworkSpec {
  const name = networkName(flags.network);
  if (name === 'none' && flags.publish.length > 0) invalid('-p needs a network: with --network none the container has only loopback');
  for (const d of flags.dns) if (net.isIP(d) === 0) invalid(`invalid value ${shown(d)} for --dns: not an IP address`);
  return {
    name,
    ports: parsePortMappings(flags.publish),
    dns: limited(flags.dns, '--dns', 3, /./, ''),
    dnsSearch: limited(flags['dns-search'], '--dns-search', 6, DNS_WORD, 'not a domain name'),
    dnsOptions: limited(flags['dns-option'], '--dns-option', 16, DNS_OPTION, 'not a resolv.conf option'),
    addHosts: flags['add-host'].map(addHost),
  };
}
