import net from 'node:net';
import { type ErrorKind, VrunError, isErrorKind } from '../common/errors.js';
import { type ControlReply, type ControlRequest, SLOW_CLIENT } from './control-protocol.js';
import { FrameDecoder, FrameType, type FrameTypeValue, encodeFrame, encodeJsonFrame, parseJsonPayload } from './frames.js';

/** The sandbox dropped this client for not reading the output fast enough; the container runs on. */
export class ClientDroppedError extends VrunError {
  constructor(message: string) {
    super(message);
    this.name = 'ClientDroppedError';
  }
}

/** The sandbox did not answer a request in time (it may be stuck). */
export class ControlTimeoutError extends VrunError {
  constructor(message: string) {
    super(message, { kind: 'deadline' });
    this.name = 'ControlTimeoutError';
  }
}

/** The kind a sandbox's reply or error frame names; anything that is not one of ours counts as internal. */
function sentKind(v: unknown): ErrorKind {
  return isErrorKind(v) ? v : 'internal';
}

/** The CLI's end of a sandbox's ctl.sock. */
export async function connectControl(socketPath: string, opts: { timeoutMs?: number; alive?: () => boolean } = {}): Promise<net.Socket> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  for (;;) {
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const s = net.createConnection(socketPath);
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() > deadline || (opts.alive && !opts.alive())) {
        throw new VrunError(`cannot reach the sandbox (${socketPath}): ${code ?? (err as Error).message}`, { kind: 'unavailable' });
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/** One request, one JSON reply; with `replyTimeoutMs`, a ControlTimeoutError if the reply takes longer. */
export async function controlCall(
  socketPath: string,
  req: ControlRequest,
  opts: { connectTimeoutMs?: number; alive?: () => boolean; replyTimeoutMs?: number } = {},
): Promise<unknown> {
  const sock = await connectControl(socketPath, { timeoutMs: opts.connectTimeoutMs ?? 10_000, alive: opts.alive });
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer =
      opts.replyTimeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            reject(new ControlTimeoutError(`the sandbox did not answer "${req.op}" within ${Math.round(opts.replyTimeoutMs as number) / 1000} s`));
            sock.destroy();
          }, opts.replyTimeoutMs);
    sock.on('close', () => clearTimeout(timer));
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > 4 << 20) sock.destroy(new Error('reply too long'));
    });
    sock.on('error', (e) => reject(new VrunError(`sandbox connection failed: ${e.message}`)));
    sock.on('end', () => {
      clearTimeout(timer);
      const line = buf.split('\n')[0] ?? '';
      let r: ControlReply;
      try {
        r = JSON.parse(line) as ControlReply;
      } catch {
        reject(new VrunError('the sandbox closed the connection without a reply'));
        return;
      }
      if (r.ok) resolve(r.value);
      else reject(new VrunError(r.error, { kind: sentKind(r.kind) }));
    });
    sock.write(JSON.stringify(req) + '\n');
  });
}

export interface StreamHandlers {
  stdout(b: Buffer): void;
  stderr(b: Buffer): void;
  started?(): void;
}

export interface StreamSession {
  sendStdin(b: Buffer): void;
  sendStdinEof(): void;
  sendResize(rows: number, cols: number): void;
  sendSignal(signal: string): void;
  /** The process's exit, or a VrunError when the sandbox reported a failure. */
  result: Promise<{ exitCode: number; oomKilled: boolean }>;
}

/** An `attach` or `exec` request: frames both ways until the exit frame. */
export async function controlStream(socketPath: string, req: ControlRequest, h: StreamHandlers, opts: { timeoutMs?: number; alive?: () => boolean } = {}): Promise<StreamSession> {
  const sock = await connectControl(socketPath, opts);
  const write = (f: Buffer) => {
    if (!sock.destroyed && !sock.writableEnded) sock.write(f);
  };
  const result = new Promise<{ exitCode: number; oomKilled: boolean }>((resolve, reject) => {
    const dec = new FrameDecoder();
    let settled = false;
    const settle = (fn: () => void) => {
      if (!settled) {
        settled = true;
        fn();
      }
    };
    sock.on('data', (chunk: Buffer) => {
      let frames: { type: FrameTypeValue; payload: Buffer }[];
      try {
        frames = dec.push(chunk);
      } catch (err) {
        settle(() => reject(err));
        sock.destroy();
        return;
      }
      try {
        for (const f of frames) {
          if (f.type === FrameType.stdout) h.stdout(f.payload);
          else if (f.type === FrameType.stderr) h.stderr(f.payload);
          else if (f.type === FrameType.started) h.started?.();
          else if (f.type === FrameType.exit) {
            const v = parseJsonPayload(f.payload, 'exit');
            const code = Number(v.exitCode);
            settle(() => resolve({ exitCode: Number.isInteger(code) && code >= 0 && code <= 255 ? code : 125, oomKilled: v.oomKilled === true }));
          } else if (f.type === FrameType.error) {
            const v = parseJsonPayload(f.payload, 'error');
            const message = typeof v.message === 'string' ? v.message.slice(0, 2000) : 'the sandbox failed';
            settle(() => reject(v.reason === SLOW_CLIENT ? new ClientDroppedError(message) : new VrunError(message, { kind: sentKind(v.kind) })));
          }
        }
      } catch (err) {
        // A malformed frame from the sandbox: this session ends, the CLI does not crash.
        settle(() => reject(err));
        sock.destroy();
      }
    });
    sock.on('close', () => settle(() => reject(new VrunError('lost the connection to the sandbox before the container exited'))));
    // 'close' follows and settles the result; the error's text goes with it when nothing else did.
    sock.on('error', (err) => settle(() => reject(new VrunError(`lost the connection to the sandbox: ${err.message}`))));
  });
  result.catch(() => undefined);
  sock.write(JSON.stringify(req) + '\n');
  return {
    sendStdin: (b) => {
      for (let o = 0; o < b.length; o += 64 * 1024) write(encodeFrame(FrameType.stdin, b.subarray(o, o + 64 * 1024)));
    },
    sendStdinEof: () => write(encodeFrame(FrameType.stdinEof, Buffer.alloc(0))),
    sendResize: (rows, cols) => write(encodeJsonFrame(FrameType.resize, { rows, cols })),
    sendSignal: (signal) => write(encodeJsonFrame(FrameType.signal, { signal })),
    result,
  };
}
