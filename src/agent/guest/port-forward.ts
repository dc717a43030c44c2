/**
 * The guest's end of CRI port-forward: each PortForward call is one TCP connection to a port on the guest's
 * own loopback, carried over the agent connection (the shim accepts the host side in the pod's network
 * namespace, see src/shim/port-forward.ts). Only loopback is dialled, so the call reaches nothing a process
 * in the pod could not reach itself. Both directions keep backpressure: a slow host pauses the socket's
 * reads (gRPC's write buffer fills), a slow guest server pauses the call (its socket's buffer fills).
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
/** How long a dial may take: loopback answers at once, a listener with a full backlog does not. */
const DIAL_TIMEOUT_MS = 10_000;
const LOOPBACK = new Set(['127.0.0.1', '::1']);

export type PortForwardCall = grpc.ServerDuplexStream<PortForwardRequest__Output, PortForwardResponse>;

/** The port and address of the opening message, checked. */
export function forwardTarget(msg: PortForwardRequest__Output): { address: string; port: number } {
  const address = msg.address === '' ? '127.0.0.1' : msg.address;
  if (!LOOPBACK.has(address)) throw invalid(`PortForward: address ${JSON.stringify(address.slice(0, 64))} is not the guest's loopback (127.0.0.1 or ::1)`);
  if (!Number.isInteger(msg.port) || msg.port < 1 || msg.port > 65535) throw invalid(`PortForward: port ${msg.port} is out of range 1..65535`);
  return { address, port: msg.port };
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
    let socket: net.Socket | undefined;
    let ended = false;
    let counted = false;
    /** `err` fails the call, null ends it; 'gone' only releases what the call held (the host went away). */
    const finish = (err: unknown): void => {
      if (ended) return;
      ended = true;
      if (counted) this.open--;
      socket?.destroy();
      if (err === 'gone') return;
      if (err) call.emit('error', toStatus(err));
      else call.end();
    };

    const dial = (msg: PortForwardRequest__Output): void => {
      const target = forwardTarget(msg);
      if (this.open >= this.max) throw exhausted(`PortForward: ${this.max} forwarded connections are open already`);
      this.open++;
      counted = true;
      const s = net.connect({ host: target.address, port: target.port, timeout: DIAL_TIMEOUT_MS });
      socket = s;
      s.once('timeout', () => finish(new VrunError(`PortForward: dialling ${target.address}:${target.port} in the guest timed out`, { kind: 'unavailable' })));
      s.once('connect', () => s.setTimeout(0));
      s.on('error', (err: NodeJS.ErrnoException) => {
        const connected = !s.connecting && s.bytesWritten + s.bytesRead > 0;
        finish(new VrunError(`PortForward: ${connected ? 'connection to' : 'cannot connect to'} ${target.address}:${target.port} in the guest: ${err.code ?? errorMessage(err)}`, { kind: 'unavailable' }));
      });
      s.on('data', (chunk: Buffer) => {
        for (let off = 0; off < chunk.length; off += CHUNK_BYTES) {
          if (!call.write({ data: chunk.subarray(off, off + CHUNK_BYTES) })) s.pause();
        }
      });
      // The guest server closed: what it sent is queued on the call, which ends after it.
      s.once('close', () => finish(null));
    };
    call.on('drain', () => socket?.resume());

    call.on('data', (msg: PortForwardRequest__Output) => {
      if (ended) return;
      try {
        const bad = this.refusal(msg);
        if (bad) throw bad;
        if (!socket) dial(msg);
        else if (msg.port !== 0 || msg.address !== '') throw invalid('PortForward: only the first message names the port');
        if (msg.data.length > 0 && socket && !socket.write(msg.data)) {
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
      else socket.end();
    });
    call.on('cancelled', () => finish('gone'));
    call.on('error', (err) => {
      this.log.debug({ err: errorMessage(err) }, 'port-forward stream broke');
      finish('gone');
    });
  };
}
