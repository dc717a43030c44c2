/**
 * The guest's end of CRI port-forward: each PortForward call is one TCP connection to a port on the guest's
 * own loopback, carried over the agent connection (the shim accepts the host side in the pod's network
 * namespace, see src/shim/port-forward.ts). Only loopback is dialled, so the call reaches nothing a process
 * in the pod could not reach itself. Both directions keep backpressure: a slow host pauses the socket's
 * reads (gRPC's write buffer fills), a slow guest server pauses the call (its socket's buffer fills).
 *
 * The opening message's `address`: empty means "localhost", what containerd dials for a runc pod, and is what
 * the shim sends (it calls AgentClient.portForward without an address, src/agent/host/client.ts). Like
 * containerd (sandbox_portforward_linux.go) that dials 127.0.0.1 and, only when that fails before connecting
 * (refused, no such address, unreachable), ::1, so a server listening only on IPv6 loopback is reached and
 * one with both families gets the IPv4 listener. "127.0.0.1" or "::1" is dialled alone. The call is paused
 * until a connection is up, so what the host sent meanwhile reaches the server once, in order, whichever
 * attempt connected; the call counts once against MAX_PORT_FORWARDS and the whole dial against
 * DIAL_TIMEOUT_MS, however many attempts it made.
 */
import net from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import { VrunError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { PortForwardRequest__Output } from '../protocol/generated/vrun/agent/v1/PortForwardRequest.js';
import type { PortForwardResponse } from '../protocol/generated/vrun/agent/v1/PortForwardResponse.js';
import { exhausted, invalid, toStatus } from '../protocol/rpc-error.js';

/** Open forwarded connections at most; more calls are refused until one ends. */
export const MAX_PORT_FORWARDS = 64;
/** Largest piece of socket data in one response message (what the socket reads is usually far less). */
const CHUNK_BYTES = 64 * 1024;
/** How long a dial may take, all attempts: loopback answers at once, a listener with a full backlog does not. */
const DIAL_TIMEOUT_MS = 10_000;
const LOOPBACK = new Set(['127.0.0.1', '::1']);
/** Failures of the IPv4 attempt that mean "nothing there", so ::1 is tried next. */
const FALLBACK_CODES = new Set(['ECONNREFUSED', 'EADDRNOTAVAIL', 'ENETUNREACH']);

export type PortForwardCall = grpc.ServerDuplexStream<PortForwardRequest__Output, PortForwardResponse>;

export interface Target {
  address: string;
  /** Dialled only when `address` found nothing there (localhost: ::1 after 127.0.0.1). */
  fallback: string | undefined;
  port: number;
}

/** The port and addresses to try, in order, of the opening message, checked. */
export function forwardTarget(msg: PortForwardRequest__Output): Target {
  if (msg.address !== '' && !LOOPBACK.has(msg.address)) {
    throw invalid(`PortForward: address ${JSON.stringify(msg.address.slice(0, 64))} is not the guest's loopback (127.0.0.1 or ::1, or empty for localhost)`);
  }
  if (!Number.isInteger(msg.port) || msg.port < 1 || msg.port > 65535) throw invalid(`PortForward: port ${msg.port} is out of range 1..65535`);
  return msg.address === '' ? { address: '127.0.0.1', fallback: '::1', port: msg.port } : { address: msg.address, fallback: undefined, port: msg.port };
}

export class PortForwards {
  private open = 0;

  constructor(
    private readonly log: Logger,
    /** The strict decoder's verdict on a message (an unknown field), or null. */
    private readonly refusal: (msg: object) => VrunError | null,
    private readonly max = MAX_PORT_FORWARDS,
  ) {}

  get active(): number {
    return this.open;
  }

  readonly handle = (call: PortForwardCall): void => {
    /** The attempt in progress, then the connection. */
    let socket: net.Socket | undefined;
    let connected = false;
    /** What the host sent before a connection was up (the call is paused meanwhile, so one message at most). */
    const early: Buffer[] = [];
    /** The host half-closed before a connection was up. */
    let hostEnded = false;
    /** The attempts that failed, "IPv4: 127.0.0.1:80 ECONNREFUSED". */
    const failures: string[] = [];
    let dialTimer: NodeJS.Timeout | undefined;
    let ended = false;
    let counted = false;
    /** `err` fails the call, null ends it; 'gone' only releases what the call held (the host went away). */
    const finish = (err: unknown): void => {
      if (ended) return;
      ended = true;
      if (counted) this.open--;
      clearTimeout(dialTimer);
      socket?.destroy();
      if (err === 'gone') return;
      if (err) call.emit('error', toStatus(err));
      else call.end();
    };

    const onConnect = (s: net.Socket): void => {
      connected = true;
      clearTimeout(dialTimer);
      const resume = (): void => {
        if (hostEnded) s.end();
        else call.resume();
      };
      const flushed = early.map((b) => s.write(b)).every(Boolean);
      early.length = 0;
      if (flushed) resume();
      else s.once('drain', resume);
    };

    const attempt = (target: Target, address: string, next: string | undefined): void => {
      const s = net.connect({ host: address, port: target.port });
      socket = s;
      s.once('connect', () => onConnect(s));
      s.on('error', (err: NodeJS.ErrnoException) => {
        if (ended || socket !== s) return;
        const code = err.code ?? errorMessage(err);
        if (connected) {
          finish(new VrunError(`PortForward: connection to ${hostPort(address, target.port)} in the guest: ${code}`, { kind: 'unavailable' }));
          return;
        }
        failures.push(target.fallback !== undefined ? `${family(address)}: ${hostPort(address, target.port)} ${code}` : code);
        if (next !== undefined && FALLBACK_CODES.has(code)) {
          s.destroy();
          attempt(target, next, undefined);
        } else {
          finish(new VrunError(`PortForward: cannot connect to ${dialled(target)} in the guest${failureList(target, failures)}`, { kind: 'unavailable' }));
        }
      });
      s.on('data', (chunk: Buffer) => {
        for (let off = 0; off < chunk.length; off += CHUNK_BYTES) {
          if (!call.write({ data: chunk.subarray(off, off + CHUNK_BYTES) })) s.pause();
        }
      });
      // The guest server closed: what it sent is queued on the call, which ends after it.
      s.once('close', () => {
        if (socket === s) finish(null);
      });
    };

    const dial = (msg: PortForwardRequest__Output): void => {
      const target = forwardTarget(msg);
      if (this.open >= this.max) throw exhausted(`PortForward: ${this.max} forwarded connections are open already`);
      this.open++;
      counted = true;
      // Nothing more is read from the host until a connection is up: no data is lost or reordered when an
      // attempt fails, and the host's writes wait in gRPC's flow control meanwhile.
      call.pause();
      dialTimer = setTimeout(() => {
        finish(new VrunError(`PortForward: dialling ${dialled(target)} in the guest timed out after ${DIAL_TIMEOUT_MS} ms${failureList(target, failures)}`, { kind: 'unavailable' }));
      }, DIAL_TIMEOUT_MS);
      attempt(target, target.address, target.fallback);
    };
    call.on('drain', () => socket?.resume());

    call.on('data', (msg: PortForwardRequest__Output) => {
      if (ended) return;
      try {
        const bad = this.refusal(msg);
        if (bad) throw bad;
        if (!socket) dial(msg);
        else if (msg.port !== 0 || msg.address !== '') throw invalid('PortForward: only the first message names the port');
        if (msg.data.length === 0 || !socket) return;
        if (!connected) {
          early.push(msg.data);
          call.pause();
        } else if (!socket.write(msg.data)) {
          call.pause();
          socket.once('drain', () => call.resume());
        }
      } catch (err) {
        finish(err);
      }
    });
    // The host closed its side: the guest server reads EOF and may still answer.
    call.on('end', () => {
      if (!socket) finish(invalid('PortForward: the stream ended before it named a port'));
      else if (!connected) hostEnded = true;
      else socket.end();
    });
    call.on('cancelled', () => finish('gone'));
    call.on('error', (err) => {
      this.log.debug({ err: errorMessage(err) }, 'port-forward stream broke');
      finish('gone');
    });
  };
}

/** "127.0.0.1:80", "[::1]:80". */
function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function family(address: string): string {
  return address.includes(':') ? 'IPv6' : 'IPv4';
}

/** What was dialled, for errors: "localhost:80" when both families are tried, else the one address. */
function dialled(target: Target): string {
  return target.fallback !== undefined ? `localhost:${target.port}` : hostPort(target.address, target.port);
}

/** ": ECONNREFUSED" for one address; ", IPv4: 127.0.0.1:80 ECONNREFUSED, IPv6: [::1]:80 ECONNREFUSED" for localhost. */
function failureList(target: Target, failures: readonly string[]): string {
  if (failures.length === 0) return '';
  return `${target.fallback !== undefined ? ',' : ':'} ${failures.join(', ')}`;
}
