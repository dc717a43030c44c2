/**
 * A unary ttrpc server over unix sockets, wire-compatible with containerd's Go ttrpc.
 *
 * Peers are not trusted: frames are bounded (4 MiB), requests that cannot be understood get a status on
 * their stream the way Go's server answers them, frames a server must never receive (responses, unknown
 * types) close that connection, and no input reaches an unhandled exception. Requests on one connection
 * run concurrently; at most `maxConcurrentRequests` per connection are in flight before the server stops
 * reading from that socket, and a peer that does not read its responses stops being read from too.
 */
import net from 'node:net';
import fs from 'node:fs';
import { rootLogger, type Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import { FrameReader, FrameType, FrameFlag, MAX_FRAME_DATA_LENGTH, encodeFrame, type FrameEvent, type FrameHeader } from './frame.js';
import { Request, Response, metadataFromPairs, type Metadata } from './messages.js';
import { Code, TtrpcError, codeName, statusFromError } from './status.js';

export interface CallContext {
  readonly service: string;
  readonly method: string;
  readonly metadata: Metadata;
  /** Aborted when the caller's deadline passes or its connection goes away; the reason is a TtrpcError. */
  readonly signal: AbortSignal;
  /** Epoch milliseconds of the caller's deadline, when it sent one. */
  readonly deadline: number | undefined;
}

/** One RPC: receives the encoded request, returns the encoded response or throws (TtrpcError for a code). */
export type UnaryMethod = (payload: Uint8Array, ctx: CallContext) => Promise<Uint8Array> | Uint8Array;

export interface TtrpcServerOptions {
  /** Requests in flight per connection before reading from it pauses (default 64). */
  maxConcurrentRequests?: number;
  /** Simultaneous connections; more are closed on accept (default 256). */
  maxConnections?: number;
  maxMessageLength?: number;
  logger?: Logger;
}

/** setTimeout cannot wait longer than this; longer deadlines are simply not enforced early. */
const MAX_TIMER_MS = 0x7fffffff;

export class TtrpcServer {
  private readonly services = new Map<string, ReadonlyMap<string, UnaryMethod>>();
  private readonly connections = new Set<ServerConnection>();
  private readonly listeners: net.Server[] = [];
  private readonly socketPaths: string[] = [];
  private closing = false;
  readonly maxConcurrentRequests: number;
  readonly maxConnections: number;
  readonly maxMessageLength: number;
  readonly log: Logger;

  constructor(opts: TtrpcServerOptions = {}) {
    this.maxConcurrentRequests = opts.maxConcurrentRequests ?? 64;
    this.maxConnections = opts.maxConnections ?? 256;
    this.maxMessageLength = Math.min(opts.maxMessageLength ?? MAX_FRAME_DATA_LENGTH, MAX_FRAME_DATA_LENGTH);
    this.log = opts.logger ?? rootLogger().child({ component: 'ttrpc-server' });
  }

  register(service: string, methods: Readonly<Record<string, UnaryMethod>>): void {
    if (this.services.has(service)) throw new Error(`ttrpc service ${service} is already registered`);
    this.services.set(service, new Map(Object.entries(methods)));
  }

  lookup(service: string, method: string): UnaryMethod | TtrpcError {
    const svc = this.services.get(service);
    if (!svc) return new TtrpcError(Code.UNIMPLEMENTED, `ttrpc: service "${service}" is not served here`);
    const m = svc.get(method);
    if (!m) return new TtrpcError(Code.UNIMPLEMENTED, `ttrpc: method "${method}" is not implemented by service "${service}"`);
    return m;
  }

  /**
   * Listens on a unix socket path (a "unix://" prefix is accepted, as containerd writes addresses) or on
   * an already-listening socket inherited as a file descriptor (how a shim's serving process gets its socket).
   */
  async listen(target: string | { fd: number }): Promise<void> {
    if (this.closing) throw new Error('ttrpc server is closed');
    const srv = net.createServer((socket) => this.serve(socket));
    srv.maxConnections = this.maxConnections;
    srv.on('error', (err) => this.log.error({ err }, 'ttrpc listener error'));
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      const done = (): void => {
        srv.off('error', reject);
        resolve();
      };
      if (typeof target === 'string') srv.listen(target.replace(/^unix:\/\//, ''), done);
      else srv.listen({ fd: target.fd }, done);
    });
    if (typeof target === 'string') this.socketPaths.push(target.replace(/^unix:\/\//, ''));
    this.listeners.push(srv);
  }

  /** Serves one already-connected socket (e.g. accepted elsewhere or one end of a socketpair). */
  serve(socket: net.Socket): void {
    if (this.closing || this.connections.size >= this.maxConnections) {
      socket.destroy();
      return;
    }
    const conn = new ServerConnection(this, socket, () => this.connections.delete(conn));
    this.connections.add(conn);
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Stops accepting. With `graceful`, in-flight calls finish and their responses are written first (up
   * to `timeoutMs`), which is what a shim needs to answer Shutdown before it exits; then every
   * connection is closed and the socket files this server created are removed.
   */
  async close(opts: { graceful?: boolean; timeoutMs?: number } = {}): Promise<void> {
    this.closing = true;
    // net.Server.close() reports completion only once every connection is gone, so wait for it last.
    const listenersClosed = this.listeners.splice(0).map((l) => new Promise<void>((resolve) => l.close(() => resolve())));
    for (const p of this.socketPaths.splice(0)) fs.rmSync(p, { force: true });
    const conns = [...this.connections];
    if (opts.graceful) {
      await Promise.race([Promise.all(conns.map((c) => c.drained())), new Promise<void>((r) => setTimeout(r, opts.timeoutMs ?? 5000).unref())]);
    }
    await Promise.all(conns.map((c) => c.destroy()));
    await Promise.all(listenersClosed);
  }
}

class ServerConnection {
  private readonly reader: FrameReader;
  private readonly inFlight = new Map<number, AbortController>();
  private readonly queued: FrameEvent[] = [];
  private lastStreamId = 0;
  private waitingForDrain = false;
  private closed = false;
  private readonly closedPromise: Promise<void>;
  private drainWaiters: (() => void)[] = [];

  constructor(
    private readonly server: TtrpcServer,
    private readonly socket: net.Socket,
    onClose: () => void,
  ) {
    this.reader = new FrameReader(server.maxMessageLength);
    this.closedPromise = new Promise((resolve) => {
      socket.on('close', () => {
        this.closed = true;
        const reason = new TtrpcError(Code.CANCELLED, 'ttrpc: connection closed');
        for (const ctl of this.inFlight.values()) ctl.abort(reason);
        this.inFlight.clear();
        this.notifyDrained();
        onClose();
        resolve();
      });
    });
    socket.on('error', (err) => this.server.log.debug({ err }, 'ttrpc connection error'));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      this.waitingForDrain = false;
      this.pump();
    });
  }

  drained(): Promise<void> {
    if (this.inFlight.size === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  async destroy(): Promise<void> {
    // end() flushes responses already written before the socket is released; a peer that never reads
    // them cannot hold the close up for more than a second.
    this.socket.end(() => this.socket.destroy());
    setTimeout(() => this.socket.destroy(), 1000).unref();
    await this.closedPromise;
  }

  private notifyDrained(): void {
    if (this.inFlight.size > 0 && !this.closed) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  private onData(chunk: Buffer): void {
    for (const ev of this.reader.push(chunk)) this.queued.push(ev);
    this.pump();
  }

  /** Handles queued frames while under the concurrency bound, pausing the socket when over it. */
  private pump(): void {
    while (!this.closed && this.queued.length > 0 && this.inFlight.size < this.server.maxConcurrentRequests && !this.waitingForDrain) {
      this.handle(this.queued.shift()!);
    }
    const busy = this.queued.length > 0 || this.inFlight.size >= this.server.maxConcurrentRequests || this.waitingForDrain;
    if (busy) this.socket.pause();
    else if (!this.closed) this.socket.resume();
  }

  private protocolViolation(what: string): void {
    this.server.log.warn({ what }, 'ttrpc: closing connection after a protocol violation');
    this.queued.length = 0;
    this.socket.destroy();
  }

  private handle(ev: FrameEvent): void {
    const h = ev.header;
    if (ev.kind === 'oversized') {
      this.sendStatus(h.streamId, Code.RESOURCE_EXHAUSTED, `message length ${h.length} exceeds maximum message size of ${this.server.maxMessageLength}`);
      return;
    }
    switch (h.type) {
      case FrameType.Request:
        this.handleRequest(h, ev.data);
        return;
      case FrameType.Data:
        this.sendStatus(h.streamId, Code.UNIMPLEMENTED, 'ttrpc: streaming is not supported by this server');
        return;
      default:
        this.protocolViolation(`frame type ${h.type} sent to a server`);
    }
  }

  private handleRequest(h: FrameHeader, data: Buffer): void {
    if (h.streamId % 2 !== 1) {
      this.sendStatus(h.streamId, Code.INVALID_ARGUMENT, 'StreamID must be odd for client initiated streams');
      return;
    }
    if (h.streamId <= this.lastStreamId) {
      this.sendStatus(h.streamId, Code.INVALID_ARGUMENT, 'StreamID cannot be re-used and must increment');
      return;
    }
    this.lastStreamId = h.streamId;
    if (h.flags & FrameFlag.RemoteOpen) {
      this.sendStatus(h.streamId, Code.UNIMPLEMENTED, 'ttrpc: streaming is not supported by this server');
      return;
    }
    let req: Request;
    try {
      req = Request.decode(data);
    } catch (err) {
      this.sendStatus(h.streamId, Code.INVALID_ARGUMENT, `unmarshal request error: ${errorMessage(err)}`);
      return;
    }
    const method = this.server.lookup(req.service, req.method);
    if (method instanceof TtrpcError) {
      this.sendStatus(h.streamId, method.code, method.message);
      return;
    }
    this.run(h.streamId, req, method);
  }

  private run(streamId: number, req: Request, method: UnaryMethod): void {
    const ctl = new AbortController();
    this.inFlight.set(streamId, ctl);
    let timer: NodeJS.Timeout | undefined;
    let deadline: number | undefined;
    if (req.timeoutNano > 0) {
      const ms = Math.ceil(req.timeoutNano / 1e6);
      deadline = Date.now() + ms;
      if (ms <= MAX_TIMER_MS) {
        timer = setTimeout(() => {
          const err = new TtrpcError(Code.DEADLINE_EXCEEDED, `${req.service}/${req.method}: deadline of ${ms}ms exceeded`);
          ctl.abort(err);
          this.finish(streamId, ctl, () => this.sendStatus(streamId, err.code, err.message));
        }, ms);
      }
    }
    const ctx: CallContext = { service: req.service, method: req.method, metadata: metadataFromPairs(req.metadata), signal: ctl.signal, deadline };
    const started = Promise.resolve().then(() => method(req.payload, ctx));
    started.then(
      (payload) =>
        this.finish(streamId, ctl, () => {
          clearTimeout(timer);
          this.sendResponse(streamId, { status: { code: Code.OK }, payload }, `${req.service}/${req.method}`);
        }),
      (err: unknown) =>
        this.finish(streamId, ctl, () => {
          clearTimeout(timer);
          const st = statusFromError(err);
          if (st.code === Code.UNKNOWN || st.code === Code.INTERNAL) this.server.log.debug({ err, method: `${req.service}/${req.method}` }, 'ttrpc handler failed');
          this.sendResponse(streamId, { status: st }, `${req.service}/${req.method}`);
        }),
    );
  }

  /** Runs `respond` only for the first outcome of a stream (result, error or deadline). */
  private finish(streamId: number, ctl: AbortController, respond: () => void): void {
    if (this.inFlight.get(streamId) !== ctl) return;
    this.inFlight.delete(streamId);
    if (!this.closed) respond();
    this.notifyDrained();
    this.pump();
  }

  private sendStatus(streamId: number, code: number, message: string): void {
    this.sendResponse(streamId, { status: { code, message } }, codeName(code));
  }

  private sendResponse(streamId: number, resp: Parameters<typeof Response.encode>[0], what: string): void {
    if (this.closed) return;
    let frame: Buffer;
    try {
      frame = encodeFrame(streamId, FrameType.Response, 0, Response.encode(resp), this.server.maxMessageLength);
    } catch (err) {
      this.server.log.warn({ err, what }, 'ttrpc: response could not be encoded');
      // encodeFrame throws RangeError only for size; anything else is a handler returning a wrong type.
      const code = err instanceof RangeError ? Code.RESOURCE_EXHAUSTED : Code.INTERNAL;
      const fallback = Response.encode({ status: { code, message: `ttrpc: response to ${what} could not be sent: ${errorMessage(err)}` } });
      frame = encodeFrame(streamId, FrameType.Response, 0, fallback);
    }
    if (!this.socket.write(frame)) this.waitingForDrain = true;
  }
}
