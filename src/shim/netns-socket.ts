import { closeSync } from 'node:fs';
import net from 'node:net';
import { VrunError } from '../common/errors.js';
import { loadNative } from '../common/native.js';

/**
 * TCP sockets inside a network namespace this process is not in (a CRI pod's), made by the addon on a thread
 * of its own that enters the namespace (native/src/netns_socket.cc), then handed to Node's net module, and the
 * original destination of a connection an iptables REDIRECT sent to one of them.
 */
interface NetnsSocketAddon {
  netnsListenTcp(netns: string, host: string, port: number, backlog: number): number;
  netnsConnectTcp(netns: string, host: string, port: number): number;
  sockOriginalDst(fd: number): { address: string; port: number };
}

const addon = (): NetnsSocketAddon => loadNative<NetnsSocketAddon>();

/** A net.Server listening on host:port (0: any free port) inside the namespace at `netns`. */
export async function listenInNetns(server: net.Server, netns: string, host: string, port: number, backlog = 128): Promise<net.AddressInfo> {
  const fd = addon().netnsListenTcp(netns, host, port, backlog);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ fd, backlog }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new VrunError(`the listener in ${netns} has no TCP address`, { kind: 'internal' });
  return addr;
}

/** A socket connected to host:port from inside the namespace at `netns` (loopback there answers at once). */
export function connectInNetns(netns: string, host: string, port: number): net.Socket {
  const fd = addon().netnsConnectTcp(netns, host, port);
  return new net.Socket({ fd, readable: true, writable: true });
}

/** Where an accepted connection was headed before a NAT REDIRECT sent it to our listener. */
export function originalDestination(socket: net.Socket): { address: string; port: number } {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new VrunError('the accepted connection has no file descriptor', { kind: 'internal' });
  return addon().sockOriginalDst(fd);
}
