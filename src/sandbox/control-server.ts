import net from 'node:net';
import { rm } from 'node:fs/promises';
import { VrunError, errorKind, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { type ControlReply, type ControlRequest, SLOW_CLIENT, STOP_KILL_GRACE_MS, STOP_TEARDOWN_MS, parseControlRequest, readRequestLine, slowClientReason, terminalSize } from './control-protocol.js';
import { FrameDecoder, FrameType, type FrameTypeValue, encodeFrame, encodeJsonFrame, parseJsonPayload } from './frames.js';
import type { OutputSink, Sandbox } from './sandbox.js';

/**
 * The sandbox process's end of ctl.sock: one request per connection, answered from the Sandbox. Clients are
 * the local CLI (root only: the state dir is 0700), but requests are still validated and bounded.
 *
 * Output to attached clients is bounded per client: the container's output is forwarded as it comes (the pumps
 * do not wait for any client), so a client that stops reading would make its socket buffer grow without end.
 * Past `maxClientBacklog` bytes waiting in a client's socket, that client is dropped: it gets no more output,
 * an error frame saying why (slowClientReason, with reason SLOW_CLIENT), and the connection is ended (destroyed
 * if it still does not read within DROP_GRACE_MS). The container runs on, and container.log keeps its output
 * for `vrun logs`. Docker makes the other choice: its attach streams sit behind an unbuffered broadcaster with
 * a ~1 MB buffer, so a slow `docker attach` client slows the container's writes (and every other consumer) to
 * its pace; an opt-in to drop instead (moby PR 30286) was closed unmerged. Here one stuck client must neither
 * stall the container (and with it every other client) nor grow the sandbox process's memory: it is dropped.
 */
export interface ControlServerLimits {
  /** Bytes waiting in one client's socket before it is dropped (default 4 MiB). */
  maxClientBacklog?: number;
  /** After `stop`'s SIGKILL, how long the guest has to confirm the container is gone (default STOP_KILL_GRACE_MS). */
  stopKillGraceMs?: number;
  /** How long the forced teardown (VMM killed) may take before `stop` reports failure (default STOP_TEARDOWN_MS). */
  stopTeardownMs?: number;
}

export const MAX_CLIENT_BACKLOG = 4 << 20;
/** A dropped client's last chance to read what was queued for it (its reason included) before it is cut off. */
const DROP_GRACE_MS = 10_000;
/** Output payload per frame (a chunk from the guest may exceed MAX_FRAME). */
const OUTPUT_FRAME = 64 * 1024;

export class ControlServer {
  private readonly server: net.Server;
  private readonly conns = new Set<net.Socket>();
  /** Requests still being answered: close() lets them send their last frame (the exit) first. */
  private readonly inFlight = new Set<Promise<void>>();
  private readonly limits: Required<ControlServerLimits>;

  constructor(
    private readonly sandbox: Sandbox,
    private readonly socketPath: string,
    private readonly log: Logger,
    limits: ControlServerLimits = {},
  ) {
    this.limits = {
      maxClientBacklog: limits.maxClientBacklog ?? MAX_CLIENT_BACKLOG,
      stopKillGraceMs: limits.stopKillGraceMs ?? STOP_KILL_GRACE_MS,
      stopTeardownMs: limits.stopTeardownMs ?? STOP_TEARDOWN_MS,
    };
    this.server = net.createServer((sock) => this.onConnection(sock));
    this.server.on('error', (err) => this.log.error({ err: errorMessage(err) }, 'control socket failed'));
  }

  async listen(): Promise<void> {
    await rm(this.socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.socketPath, () => resolve());
    });
  }

  /** Waits for pending replies to flush, then closes everything. */
  async close(): Promise<void> {
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => setTimeout(r, 5000))]);
    await Promise.race([
      Promise.all([...this.conns].map((c) => new Promise<void>((r) => (c.writableEnded ? r() : c.end(r))))),
      new Promise((r) => setTimeout(r, 2000)),
    ]);
    for (const c of this.conns) c.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private onConnection(sock: net.Socket): void {
    this.conns.add(sock);
    sock.on('close', () => this.conns.delete(sock));
    // A client that goes away mid-write (EPIPE, ECONNRESET): that connection ends, nothing else does.
    sock.on('error', (err) => {
      this.log.debug({ err: errorMessage(err) }, 'control client connection failed');
      sock.destroy();
    });
    const handled = (async () => {
      let req: ControlRequest;
      let rest: Buffer;
      try {
        const first = await readRequestLine(sock);
        req = parseControlRequest(first.line);
        rest = first.rest;
      } catch (err) {
        reply(sock, { ok: false, error: errorMessage(err), kind: errorKind(err) });
        return;
      }
      this.log.debug({ op: req.op }, 'control request');
      try {
        switch (req.op) {
          case 'attach':
            await this.attach(sock, req, rest);
            return;
          case 'exec':
            await this.exec(sock, req, rest);
            return;
          case 'start':
            await this.sandbox.start({ keepStdin: false });
            reply(sock, { ok: true });
            return;
          case 'kill':
            await this.sandbox.signal(req.signal, req.signal === 'SIGKILL' || req.signal === 'KILL' || req.signal === '9');
            reply(sock, { ok: true });
            return;
          case 'stop':
            await this.stopWithDeadline(req.timeoutS);
            reply(sock, { ok: true });
            return;
          case 'stats':
            reply(sock, { ok: true, value: await this.sandbox.stats() });
            return;
        }
      } catch (err) {
        if (req.op === 'attach' || req.op === 'exec') send(sock, encodeJsonFrame(FrameType.error, { message: errorMessage(err).split('\n')[0], kind: errorKind(err) }));
        else reply(sock, { ok: false, error: errorMessage(err).split('\n')[0] ?? 'failed', kind: errorKind(err) });
        sock.end();
      }
    })();
    this.inFlight.add(handled);
    void handled.finally(() => this.inFlight.delete(handled));
  }

  /**
   * Docker's stop, with a deadline however the guest behaves: SIGTERM, `timeoutS` seconds, SIGKILL (Sandbox.stop),
   * and if the guest has not confirmed the end `stopKillGraceMs` after that (it never answers the signal calls,
   * or the container never goes), the VM is pulled: the same teardown a container's exit gets, which kills the
   * VMM. So this settles within timeoutS + stopKillGraceMs + stopTeardownMs.
   */
  private async stopWithDeadline(timeoutS: number): Promise<void> {
    const stopping = this.sandbox.stop(timeoutS);
    stopping.catch(() => undefined);
    const boundMs = timeoutS * 1000 + this.limits.stopKillGraceMs;
    if (await settlesWithin(stopping, boundMs)) return stopping;
    const why = `the guest did not confirm the stop within ${Math.round(boundMs / 100) / 10} s: its VM was killed`;
    this.log.warn({ timeoutS }, why);
    const teardown = this.sandbox.teardown({ status: 'exited', exitCode: 137, error: why });
    teardown.catch(() => undefined);
    if (!(await settlesWithin(teardown, this.limits.stopTeardownMs))) {
      throw new VrunError(`the sandbox did not finish tearing down within ${this.limits.stopTeardownMs / 1000} s after killing its VM`);
    }
    await teardown;
  }

  /**
   * Where a client's container output goes: frames on its socket, until its backlog passes the cap (then it is
   * dropped, see the class comment). `onDrop` runs once, when that happens.
   */
  private outputTo(sock: net.Socket, onDrop: () => void): OutputSink {
    let dropped = false;
    const forward = (type: FrameTypeValue, chunk: Buffer) => {
      if (dropped || sock.destroyed || sock.writableEnded) return;
      for (let o = 0; o < chunk.length; o += OUTPUT_FRAME) sock.write(encodeFrame(type, chunk.subarray(o, o + OUTPUT_FRAME)));
      if (sock.writableLength > this.limits.maxClientBacklog) {
        dropped = true;
        this.log.warn({ backlog: sock.writableLength }, 'dropping a control client that does not read the container output');
        onDrop();
        sock.end(encodeJsonFrame(FrameType.error, { message: slowClientReason(this.limits.maxClientBacklog), reason: SLOW_CLIENT }));
        setTimeout(() => sock.destroy(), DROP_GRACE_MS).unref();
      }
    };
    return {
      stdout: (c) => forward(FrameType.stdout, c),
      stderr: (c) => forward(FrameType.stderr, c),
    };
  }

  /** The foreground `vrun run`: output to the client, its stdin and signals to the container, then the exit. */
  private async attach(sock: net.Socket, req: Extract<ControlRequest, { op: 'attach' }>, rest: Buffer): Promise<void> {
    const { start, stdin, size } = req;
    await this.sandbox.ready;
    let removeSink = () => undefined as unknown;
    removeSink = this.sandbox.addSink(this.outputTo(sock, () => removeSink()));
    sock.once('close', () => removeSink());
    const input = stdin ? this.sandbox.openStdin() : undefined;
    this.readFrames(sock, rest, {
      onStdin: (b) => input?.write(b),
      onStdinEof: () => input?.end(),
      onResize: (rows, cols) => void this.sandbox.resize(rows, cols).catch(() => undefined),
      onSignal: (s) => void this.sandbox.signal(s).catch(() => undefined),
    });
    if (start) {
      // The first resize frame would race the start: a process that reads its size at once saw 0x0.
      if (size) await this.sandbox.resize(size.rows, size.cols).catch(() => undefined);
      await this.sandbox.start({ keepStdin: stdin });
    }
    send(sock, encodeJsonFrame(FrameType.started, {}));
    await this.sandbox.whenDone();
    removeSink();
    const exit = this.sandbox.exit;
    if (exit) send(sock, encodeJsonFrame(FrameType.exit, { exitCode: exit.exitStatus, oomKilled: exit.oomKilled }));
    else send(sock, encodeJsonFrame(FrameType.error, { message: this.sandbox.failed?.reason ?? 'the sandbox ended without an exit status', kind: this.sandbox.failed?.kind ?? 'internal' }));
    sock.end();
  }

  private async exec(sock: net.Socket, req: Extract<ControlRequest, { op: 'exec' }>, rest: Buffer): Promise<void> {
    const out = this.outputTo(sock, () => undefined);
    const p = await this.sandbox.exec(req, req.stdin, out);
    this.readFrames(sock, rest, {
      onStdin: (b) => p.stdin?.write(b),
      onStdinEof: () => p.stdin?.end(),
      onResize: (rows, cols) => void this.sandbox.resize(rows, cols, p.execId).catch(() => undefined),
      onSignal: () => undefined,
    });
    send(sock, encodeJsonFrame(FrameType.started, {}));
    const r = await p.wait;
    send(sock, encodeJsonFrame(FrameType.exit, { exitCode: r.exitStatus, oomKilled: r.oomKilled }));
    sock.end();
  }

  private readFrames(
    sock: net.Socket,
    rest: Buffer,
    h: { onStdin: (b: Buffer) => void; onStdinEof: () => void; onResize: (rows: number, cols: number) => void; onSignal: (s: string) => void },
  ): void {
    const dec = new FrameDecoder();
    const handle = (chunk: Buffer) => {
      let frames: { type: FrameTypeValue; payload: Buffer }[];
      try {
        frames = dec.push(chunk);
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'bad frame from client');
        sock.destroy();
        return;
      }
      for (const f of frames) {
        try {
          if (f.type === FrameType.stdin) h.onStdin(f.payload);
          else if (f.type === FrameType.stdinEof) h.onStdinEof();
          else if (f.type === FrameType.resize) {
            const size = terminalSize(parseJsonPayload(f.payload, 'resize'));
            if (size) h.onResize(size.rows, size.cols);
          } else if (f.type === FrameType.signal) {
            const v = parseJsonPayload(f.payload, 'signal');
            if (typeof v.signal === 'string' && /^SIG[A-Z0-9]{2,8}$/.test(v.signal)) h.onSignal(v.signal);
          }
        } catch (err) {
          this.log.warn({ err: errorMessage(err) }, 'bad frame from client');
        }
      }
    };
    if (rest.length > 0) handle(rest);
    sock.on('data', handle);
    sock.resume();
  }
}

/** True if `p` settles (either way) within `ms`. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms))),
  ]);
  clearTimeout(timer);
  return r;
}

function send(sock: net.Socket, frame: Buffer): void {
  if (!sock.destroyed && !sock.writableEnded) sock.write(frame);
}

function reply(sock: net.Socket, r: ControlReply): void {
  if (!sock.destroyed && !sock.writableEnded) sock.end(JSON.stringify(r) + '\n');
}
