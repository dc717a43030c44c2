import dgram from 'node:dgram';
import net from 'node:net';
import { VrunError } from '../common/errors.js';

/**
 * Docker's `-p` for one port: `[IP:][HOSTPORT:]CTRPORT[/tcp|/udp]`, an IPv6 host IP in brackets. A missing or
 * empty HOSTPORT (`-p 80`, `-p 127.0.0.1::80`) means a free port the host picks, as in Docker. Not supported:
 * port ranges and sctp (the host-port check below cannot bind sctp from Node).
 */
export interface PortMapping {
  /** '' for every address of the host. */
  hostIP: string;
  /** 0 until resolveHostPorts picks one. */
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
  /** The -p value it came from, for errors. */
  spec: string;
}

function invalid(spec: string, why: string): never {
  throw new VrunError(`-p ${spec}: ${why}`, { kind: 'invalid' });
}

function port(spec: string, text: string, which: 'host' | 'container'): number {
  if (/^\d+-\d+$/.test(text)) invalid(spec, `port ranges (${text}) are not supported: give one -p per port`);
  if (!/^\d{1,10}$/.test(text)) invalid(spec, `${which} port ${JSON.stringify(text)} is not a number`);
  const n = Number(text);
  if (n < 1 || n > 65535) invalid(spec, `${which} port ${text} is out of range (1-65535)`);
  return n;
}

export function parsePortMapping(spec: string): PortMapping {
  if (spec.length === 0) invalid(spec, 'empty port mapping (expected [IP:][HOSTPORT:]CTRPORT[/tcp|/udp])');
  if (spec.length > 100) invalid(`${spec.slice(0, 40)}…`, 'too long');
  let rest = spec;
  let protocol: 'tcp' | 'udp' = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    const p = rest.slice(slash + 1).toLowerCase();
    if (p === 'sctp') invalid(spec, 'protocol sctp is not supported (tcp or udp)');
    if (p !== 'tcp' && p !== 'udp') invalid(spec, `unknown protocol ${JSON.stringify(p)} (tcp or udp)`);
    protocol = p;
    rest = rest.slice(0, slash);
  }
  let hostIP = '';
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0 || rest[close + 1] !== ':') invalid(spec, 'an IPv6 host IP must be written [ADDRESS]:HOSTPORT:CTRPORT');
    hostIP = rest.slice(1, close);
    if (net.isIPv6(hostIP) === false) invalid(spec, `host IP ${JSON.stringify(hostIP)} is not an IPv6 address`);
    rest = rest.slice(close + 2);
    const parts = rest.split(':');
    if (parts.length !== 2) invalid(spec, 'expected [IPv6]:HOSTPORT:CTRPORT');
    return { hostIP, hostPort: parts[0] === '' ? 0 : port(spec, parts[0] ?? '', 'host'), containerPort: port(spec, parts[1] ?? '', 'container'), protocol, spec };
  }
  const parts = rest.split(':');
  if (parts.length > 3) invalid(spec, 'too many ":" (expected [IP:][HOSTPORT:]CTRPORT; an IPv6 host IP goes in brackets)');
  const ctr = parts.pop() ?? '';
  const host = parts.pop();
  if (parts.length === 1) {
    hostIP = parts[0] ?? '';
    if (net.isIP(hostIP) === 0) invalid(spec, `host IP ${JSON.stringify(hostIP)} is not an IP address`);
  }
  if (host === '' && parts.length === 0) invalid(spec, 'empty host port (write CTRPORT alone for a port the host picks)');
  const hostPort = host === undefined || host === '' ? 0 : port(spec, host, 'host');
  return { hostIP: hostIP === '0.0.0.0' || hostIP === '::' ? '' : hostIP, hostPort, containerPort: port(spec, ctr, 'container'), protocol, spec };
}

/** Parses every -p and refuses two that claim the same host address, port and protocol. */
export function parsePortMappings(specs: readonly string[]): PortMapping[] {
  const out = specs.map(parsePortMapping);
  const seen = new Map<string, string>();
  for (const m of out) {
    if (m.hostPort === 0) continue;
    const key = `${m.hostIP}|${m.hostPort}|${m.protocol}`;
    const other = seen.get(key);
    if (other !== undefined) invalid(m.spec, `host port ${m.hostPort}/${m.protocol} is also given by -p ${other}`);
    seen.set(key, m.spec);
  }
  return out;
}

/** Binds the mapping's host port and returns the port bound (the kernel's pick when hostPort is 0). */
function tryBind(m: PortMapping, portNo: number): Promise<number> {
  const address = m.hostIP || '0.0.0.0';
  return new Promise((resolve, reject) => {
    if (m.protocol === 'udp') {
      const s = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4');
      s.once('error', reject);
      s.bind({ port: portNo, address, exclusive: true }, () => {
        const got = s.address().port;
        s.close(() => resolve(got));
      });
    } else {
      const s = net.createServer();
      s.once('error', reject);
      s.listen({ port: portNo, host: address, exclusive: true }, () => {
        const got = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(got));
      });
    }
  });
}

function bindError(m: PortMapping, portNo: number, e: NodeJS.ErrnoException): VrunError {
  const where = m.hostIP ? ` on ${m.hostIP}` : '';
  if (e.code === 'EADDRINUSE') return new VrunError(`-p ${m.spec}: host port ${portNo}/${m.protocol}${where} is already in use`, { kind: 'exists' });
  if (e.code === 'EADDRNOTAVAIL') return new VrunError(`-p ${m.spec}: host IP ${m.hostIP} is not an address of this host`, { kind: 'invalid' });
  if (e.code === 'EACCES') return new VrunError(`-p ${m.spec}: not allowed to bind host port ${portNo}/${m.protocol}${where}`, { kind: 'permission' });
  return new VrunError(`-p ${m.spec}: cannot bind host port ${portNo}/${m.protocol}${where}: ${e.message}`, { kind: 'internal' });
}

/**
 * Checks that every host port is free, by binding it (in the caller's network namespace: the host's), and
 * picks the free ports Docker-style `-p CTRPORT` asks for. portmap only adds DNAT rules and binds nothing, so
 * without this a port already served on the host would be silently shadowed. Racy by nature (the port can be
 * taken between this check and the DNAT), as Docker's check is.
 */
export async function resolveHostPorts(mappings: readonly PortMapping[]): Promise<PortMapping[]> {
  const out: PortMapping[] = [];
  for (const m of mappings) {
    try {
      out.push({ ...m, hostPort: await tryBind(m, m.hostPort) });
    } catch (e) {
      throw bindError(m, m.hostPort, e as NodeJS.ErrnoException);
    }
  }
  return out;
}

/** The runtimeConfig.portMappings entries the portmap plugin reads. */
export function toCniPortMappings(mappings: readonly PortMapping[]): { hostPort: number; containerPort: number; protocol: string; hostIP?: string }[] {
  return mappings.map((m) => {
    if (m.hostPort === 0) throw new VrunError(`-p ${m.spec}: host port not resolved yet (call resolveHostPorts first)`, { kind: 'internal' });
    const e: { hostPort: number; containerPort: number; protocol: string; hostIP?: string } = { hostPort: m.hostPort, containerPort: m.containerPort, protocol: m.protocol };
    if (m.hostIP) e.hostIP = m.hostIP;
    return e;
  });
}
