import net from 'node:net';
import { rm } from 'node:fs/promises';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { type ControlReply, type ControlRequest, parseControlRequest, readRequestLine, terminalSize } from './control-protocol.js';
import { FrameDecoder, FrameType, type FrameTypeValue, encodeFrame, encodeJsonFrame, parseJsonPayload } from './frames.js';
import type { Sandbox } from './sandbox.js';

/**
 * The sandbox process's end of ctl.sock: one request per connection, answered from the Sandbox. Clients are
 * the local CLI (root only: the state dir is 0700), but requests are still validated and bounded.
 */
export class ControlServer {
  private readonly server: net.Server;
  private readonly conns = new Set<net.Socket>();
  /** Requests still being answered: close() lets them send their last frame (the exit) first. */
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly sandbox: Sandbox,
    private readonly socketPath: string,
    private readonly log: Logger,
  ) {
    this.server = net.createServer((sock) => this.onConnection(sock));
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
    sock.on('error', () => undefined);
    const handled = (async () => {
      let req: ControlRequest;
      let rest: Buffer;
      try {
        const first = await readRequestLine(sock);
        req = parseControlRequest(first.line);
        rest = first.rest;
      } catch (err) {
        reply(sock, { ok: false, error: errorMessage(err) });
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
            await this.sandbox.stop(req.timeoutS);
            reply(sock, { ok: true });
            return;
          case 'stats':
            reply(sock, { ok: true, value: await this.sandbox.stats() });
            return;
        }
      } catch (err) {
        if (req.op === 'attach' || req.op === 'exec') send(sock, encodeJsonFrame(FrameType.error, { message: errorMessage(err).split('\n')[0] }));
        else reply(sock, { ok: false, error: errorMessage(err).split('\n')[0] ?? 'failed' });
        sock.end();
      }
    })();
    this.inFlight.add(handled);
    void handled.finally(() => this.inFlight.delete(handled));
  }

  /** The foreground `vrun run`: output to the client, its stdin and signals to the container, then the exit. */
  private async attach(sock: net.Socket, req: Extract<ControlRequest, { op: 'attach' }>, rest: Buffer): Promise<void> {
    const { start, stdin, size } = req;
    await this.sandbox.ready;
    const removeSink = this.sandbox.addSink({
      stdout: (c) => send(sock, encodeFrame(FrameType.stdout, c)),
      stderr: (c) => send(sock, encodeFrame(FrameType.stderr, c)),
    });
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
    else send(sock, encodeJsonFrame(FrameType.error, { message: this.sandbox.failed ?? 'the sandbox ended without an exit status' }));
    sock.end();
  }

  private async exec(sock: net.Socket, req: Extract<ControlRequest, { op: 'exec' }>, rest: Buffer): Promise<void> {
    const out = {
      stdout: (c: Buffer) => send(sock, encodeFrame(FrameType.stdout, c)),
      stderr: (c: Buffer) => send(sock, encodeFrame(FrameType.stderr, c)),
    };
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

function send(sock: net.Socket, frame: Buffer): void {
  if (!sock.destroyed && !sock.writableEnded) sock.write(frame);
}

function reply(sock: net.Socket, r: ControlReply): void {
  if (!sock.destroyed && !sock.writableEnded) sock.end(JSON.stringify(r) + '\n');
}
