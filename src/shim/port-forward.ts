import net from 'node:net';
import type { Duplex } from 'node:stream';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { run, runChecked } from '../network/exec.js';
import { listenInNetns, originalDestination } from './netns-socket.js';

/**
 * CRI port-forward for a pod whose processes run in a VM. containerd 1.6 serves PortForward by entering the
 * pod's network namespace and dialling 127.0.0.1:PORT there, which is the host side of the VM. So the shim
 * listens on loopback in that namespace, a nat OUTPUT rule there redirects every other loopback TCP connection
 * to the listener, and each accepted connection is carried, by its original destination port
 * (SO_ORIGINAL_DST), over the agent connection to localhost:PORT inside the guest (127.0.0.1, then ::1 when
 * nothing is there, containerd's order). Nothing but the pod's own
 * namespace is touched: the rule, the listener and the connections go with the pod.
 */

/** Forwarded connections the shim carries at once per pod (the agent has its own bound). */
export const MAX_FORWARDED_CONNECTIONS = 64;
const RULE_COMMENT = 'vrun-port-forward';

/** The nat OUTPUT rule for a listener on `port`: loopback TCP to any other port goes there. */
export function redirectRule(port: number): string[] {
  return ['OUTPUT', '-o', 'lo', '-p', 'tcp', '-d', '127.0.0.1', '!', '--dport', String(port), '-m', 'comment', '--comment', RULE_COMMENT, '-j', 'REDIRECT', '--to-ports', String(port)];
}

/** Removes the redirect rule; a rule (or a namespace) that is gone already is fine. */
export async function removeRedirectRule(netns: string, port: number): Promise<void> {
  const r = await run(['iptables', '-w', '5', '-t', 'nat', '-D', ...redirectRule(port)], { netns });
  if (r.code !== 0 && !/does a matching rule exist|No chain\/target\/match|Bad rule|No such file|cannot open/i.test(r.stderr)) {
    throw new Error(`removing the port-forward rule in ${netns}: ${r.stderr.trim() || `iptables exited with ${r.code}`}`);
  }
}

/** What the forwarder needs of the agent: a stream to a port on the guest's loopback. */
export interface GuestDialer {
  portForward(port: number): Duplex;
}

export class PortForwarder {
  private readonly conns = new Set<net.Socket>();
  private stopped = false;

  private constructor(
    readonly netns: string,
    private readonly server: net.Server,
    readonly port: number,
    private readonly guest: GuestDialer,
    private readonly log: Logger,
  ) {}

  /** Listens in `netns` and adds the redirect rule; nothing is left behind when either fails. */
  static async start(netns: string, guest: GuestDialer, log: Logger): Promise<PortForwarder> {
    // Half-open: containerd may finish sending (a request) and still read the answer.
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const { port } = await listenInNetns(server, netns, '127.0.0.1', 0);
    const fwd = new PortForwarder(netns, server, port, guest, log);
    server.on('connection', (s: net.Socket) => fwd.accept(s));
    server.on('error', (err) => log.warn({ err: errorMessage(err) }, 'port-forward listener failed'));
    try {
      await runChecked(['iptables', '-w', '5', '-t', 'nat', '-A', ...redirectRule(port)], { netns, what: 'adding the port-forward redirect rule in the pod\'s network namespace' });
    } catch (err) {
      server.close();
      throw err;
    }
    log.info({ netns, port }, 'port-forward listening');
    return fwd;
  }

  private accept(s: net.Socket): void {
    if (this.stopped || this.conns.size >= MAX_FORWARDED_CONNECTIONS) {
      this.log.warn({ open: this.conns.size }, 'port-forward connection refused: too many open');
      s.destroy();
      return;
    }
    let dst: { address: string; port: number };
    try {
      dst = originalDestination(s);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'port-forward connection without an original destination');
      s.destroy();
      return;
    }
    // Only what the rule redirects: loopback, to a port other than the listener's own.
    if (dst.address !== '127.0.0.1' || dst.port === this.port || dst.port < 1) {
      s.destroy();
      return;
    }
    this.conns.add(s);
    const guest = this.guest.portForward(dst.port);
    const end = (err?: unknown) => {
      if (err) this.log.debug({ port: dst.port, err: errorMessage(err) }, 'port-forward connection failed');
      s.destroy();
      guest.destroy();
    };
    guest.on('error', end);
    s.on('error', end);
    s.once('close', () => {
      this.conns.delete(s);
      guest.destroy();
    });
    // Each side ends the other's writing; the socket closes once both directions are done.
    s.pipe(guest);
    guest.pipe(s);
    s.resume();
  }

  /** Closes the listener and every forwarded connection, and removes the rule. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const s of this.conns) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await removeRedirectRule(this.netns, this.port);
  }
}
