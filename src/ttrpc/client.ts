/**
 * A unary ttrpc client over a unix socket, wire-compatible with containerd's Go ttrpc. Calls on one
 * connection are multiplexed by odd stream ids and may complete in any order. Responses are bounded by
 * the 4 MiB frame limit; a response that cannot be decoded fails only its own call.
 */
import net from 'node:net';
import { rootLogger, type Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import { FrameReader, FrameType, MAX_FRAME_DATA_LENGTH, encodeFrame, type FrameEvent } from './frame.js';
import { Request, Response, metadataToPairs } from './messages.js';
import { Code, TtrpcError } from './status.js';

export interface CallOptions {
  /** Fails the call with DEADLINE_EXCEEDED after this long; also sent to the server as timeout_nano. */
  timeoutMs?: number;
  metadata?: Readonly<Record<string, string | readonly string[]>>;
  signal?: AbortSignal;
}

export interface ConnectOptions {
  connectTimeoutMs?: number;
  logger?: Logger;
}

interface Pending {
  resolve(payload: Uint8Array): void;
  reject(err: TtrpcError): void;
}

const MAX_STREAM_ID = 0xffffffff;

export class TtrpcClient {
  private readonly reader = new FrameReader(MAX_FRAME_DATA_LENGTH);
  private readonly pending = new Map<number, Pending>();
  private nextStreamId = 1;
  private closeReason: TtrpcError | undefined;
  private readonly closeListeners: ((reason: TtrpcError) => void)[] = [];
  private readonly log: Logger;

  /** Connects to a unix socket path; a "unix://" prefix is accepted. */
  static connect(address: string, opts: ConnectOptions = {}): Promise<TtrpcClient> {
    const path = address.replace(/^unix:\/\//, '');
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new TtrpcError(Code.UNAVAILABLE, `ttrpc: connecting to ${path} timed out`));
      }, opts.connectTimeoutMs ?? 10_000);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new TtrpcError(Code.UNAVAILABLE, `ttrpc: cannot connect to ${path}: ${err.message}`, { cause: err }));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new TtrpcClient(socket, opts.logger));
      });
    });
  }

  constructor(
    private readonly socket: net.Socket,
    logger?: Logger,
  ) {
    this.log = logger ?? rootLogger().child({ component: 'ttrpc-client' });
    socket.on('data', (chunk: Buffer) => {
      for (const ev of this.reader.push(chunk)) this.onFrame(ev);
    });
    socket.on('error', (err) => this.log.debug({ err }, 'ttrpc client connection error'));
    socket.on('close', () => this.shutdown(new TtrpcError(Code.UNAVAILABLE, 'ttrpc: connection closed')));
  }

  get closed(): boolean {
    return this.closeReason !== undefined;
  }

  /** Called once when the connection ends, for whatever reason. */
  onClose(listener: (reason: TtrpcError) => void): void {
    if (this.closeReason) listener(this.closeReason);
    else this.closeListeners.push(listener);
  }

  close(): void {
    this.shutdown(new TtrpcError(Code.UNAVAILABLE, 'ttrpc: client closed'));
    this.socket.destroy();
  }

  call(service: string, method: string, payload: Uint8Array, opts: CallOptions = {}): Promise<Uint8Array> {
    const what = `${service}/${method}`;
    if (this.closeReason) return Promise.reject(new TtrpcError(this.closeReason.code, `${what}: ${this.closeReason.message}`));
    if (opts.signal?.aborted) return Promise.reject(new TtrpcError(Code.CANCELLED, `${what}: cancelled before it was sent`));
    if (this.nextStreamId > MAX_STREAM_ID) return Promise.reject(new TtrpcError(Code.RESOURCE_EXHAUSTED, `${what}: stream ids on this connection are exhausted; reconnect`));
    const streamId = this.nextStreamId;
    this.nextStreamId += 2;

    let frame: Buffer;
    try {
      const timeoutNano = opts.timeoutMs === undefined ? 0 : Math.max(1, Math.round(opts.timeoutMs * 1e6));
      const req = Request.encode({ service, method, payload, timeoutNano, metadata: opts.metadata ? metadataToPairs(opts.metadata) : [] });
      frame = encodeFrame(streamId, FrameType.Request, 0, req);
    } catch (err) {
      return Promise.reject(new TtrpcError(Code.RESOURCE_EXHAUSTED, `${what}: request not sent: ${errorMessage(err)}`, { cause: err }));
    }

    return new Promise<Uint8Array>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => settle(() => reject(new TtrpcError(Code.CANCELLED, `${what}: cancelled`)));
      const settle = (fn: () => void): void => {
        if (!this.pending.delete(streamId)) return;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        fn();
      };
      this.pending.set(streamId, {
        resolve: (p) => settle(() => resolve(p)),
        reject: (e) => settle(() => reject(e)),
      });
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(() => settle(() => reject(new TtrpcError(Code.DEADLINE_EXCEEDED, `${what}: no response within ${opts.timeoutMs}ms`))), opts.timeoutMs);
      }
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.socket.write(frame);
    });
  }

  private onFrame(ev: FrameEvent): void {
    const p = this.pending.get(ev.header.streamId);
    if (ev.kind === 'oversized') {
      p?.reject(new TtrpcError(Code.RESOURCE_EXHAUSTED, `ttrpc: response of ${ev.header.length} bytes exceeds the maximum of ${MAX_FRAME_DATA_LENGTH}`));
      return;
    }
    if (ev.header.type !== FrameType.Response) {
      // Unary-only: stream data or unknown frame types have no call to go to. Ignoring them is bounded.
      this.log.debug({ type: ev.header.type, streamId: ev.header.streamId }, 'ttrpc client ignored a frame');
      return;
    }
    if (!p) return; // a late answer to a call that already timed out or was cancelled
    let resp: Response;
    try {
      resp = Response.decode(ev.data);
    } catch (err) {
      p.reject(new TtrpcError(Code.INTERNAL, `ttrpc: malformed response: ${errorMessage(err)}`));
      return;
    }
    const st = resp.status;
    if (st && st.code !== Code.OK) p.reject(new TtrpcError(st.code, st.message, { details: st.details }));
    else p.resolve(resp.payload);
  }

  private shutdown(reason: TtrpcError): void {
    if (this.closeReason) return;
    this.closeReason = reason;
    for (const p of [...this.pending.values()]) p.reject(reason);
    for (const l of this.closeListeners.splice(0)) l(reason);
  }
}
