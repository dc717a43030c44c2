/**
 * The stdio of one container process as the agent holds it: real pipes (stdin write end, stdout/stderr
 * read ends) or a pty master. Output waits, paused, in the pipe until a reader attaches, so a process
 * that nobody reads blocks on its own pipe instead of growing the agent's memory.
 */
import { closeSync, write } from 'node:fs';
import net from 'node:net';
import tty from 'node:tty';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { agentNative } from './native-ops.js';
import { precondition } from './rpc-error.js';

export type OutputName = 'stdout' | 'stderr';

/** Output is gathered into messages of about this size (well under the gRPC message bound)... */
const GATHER_BYTES = 256 * 1024;
/** ...or for at most this long. */
const GATHER_MS = 1;
/** Output pipes are enlarged (from 64 KiB) so a fast writer gets ahead and the agent's reads grow. */
const OUTPUT_PIPE_BYTES = 1024 * 1024;

/** What an output reader needs from its sink (a gRPC server stream). */
export interface OutputSink {
  write(chunk: { data: Buffer }): boolean;
  end(): void;
  once(event: 'drain' | 'cancelled' | 'close' | 'error', cb: () => void): unknown;
  removeListener(event: 'drain' | 'cancelled' | 'close' | 'error', cb: () => void): unknown;
}

/** The fds the OCI runtime hands to the process (closed in the agent once the runtime has them). */
export interface ChildStdio {
  stdin: number;
  stdout: number;
  stderr: number;
}

export class ProcessIo {
  private stdin: net.Socket | null = null;
  private readonly outputs = new Map<OutputName, Readable>();
  private readonly ended = new Set<OutputName>();
  private readonly attached = new Set<OutputName>();
  private ptyFd: number | null = null;
  private ptyClosed = false;
  private childEnds: number[] = [];

  /** Pipes: returns the io and the child's ends for the runtime's stdio. */
  static pipes(): { io: ProcessIo; child: ChildStdio } {
    const native = agentNative();
    const [inR, inW] = native.procPipe();
    const [outR, outW] = native.procPipe(OUTPUT_PIPE_BYTES);
    const [errR, errW] = native.procPipe(OUTPUT_PIPE_BYTES);
    const io = new ProcessIo();
    io.stdin = new net.Socket({ fd: inW, readable: false, writable: true });
    io.stdin.on('error', () => undefined); // EPIPE when the process closed stdin: its choice
    io.track('stdout', new net.Socket({ fd: outR, readable: true, writable: false }));
    io.track('stderr', new net.Socket({ fd: errR, readable: true, writable: false }));
    io.childEnds = [inR, outW, errW];
    return { io, child: { stdin: inR, stdout: outW, stderr: errW } };
  }

  /** A terminal: the pty master crun sent over the console socket. Output arrives on stdout only. */
  static terminal(masterFd: number): ProcessIo {
    const io = new ProcessIo();
    io.ptyFd = masterFd;
    io.track('stdout', new tty.ReadStream(masterFd));
    io.ended.add('stderr');
    return io;
  }

  /** An io with no streams (a process whose stdio setup failed). */
  static none(): ProcessIo {
    const io = new ProcessIo();
    io.ended.add('stdout');
    io.ended.add('stderr');
    return io;
  }

  private track(name: OutputName, stream: Readable): void {
    stream.pause();
    this.outputs.set(name, stream);
    const done = () => {
      this.ended.add(name);
      stream.emit('vrun-eof');
    };
    stream.once('end', done);
    // A pty master reads EIO once every slave fd is closed: that is its end of file.
    stream.on('error', done);
  }

  /** Closes the agent's copies of the child's ends, once the runtime has spawned with them. */
  closeChildEnds(): void {
    for (const fd of this.childEnds) closeSync(fd);
    this.childEnds = [];
  }

  /** Streams one output into `sink` until EOF (then ends it) or until the sink goes away (then detaches). */
  attachOutput(name: OutputName, sink: OutputSink): void {
    const src = this.outputs.get(name);
    if (!src || (this.ended.has(name) && src.readableLength === 0)) {
      sink.end();
      return;
    }
    if (this.attached.has(name)) throw precondition(`${name} of this process already has a reader`);
    this.attached.add(name);
    // Reads are gathered for up to GATHER_MS (or GATHER_BYTES) into one message: a fast producer's small
    // writes would otherwise cost one gRPC message each. Interactive output waits at most GATHER_MS.
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let timer: NodeJS.Timeout | null = null;
    let eofSeen = false;
    const flush = () => {
      if (timer) clearTimeout(timer);
      timer = null;
      if (pendingBytes > 0 && this.attached.has(name)) {
        const data = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        if (!sink.write({ data })) {
          src.pause();
          sink.once('drain', onDrain);
        }
      }
      if (eofSeen) finishEof();
    };
    const onDrain = () => {
      if (this.attached.has(name)) src.resume();
    };
    const onData = (buf: Buffer) => {
      pending.push(buf);
      pendingBytes += buf.length;
      if (pendingBytes >= GATHER_BYTES) flush();
      else timer ??= setTimeout(flush, GATHER_MS);
    };
    const detach = () => {
      src.removeListener('data', onData);
      src.removeListener('vrun-eof', onEof);
      sink.removeListener('drain', onDrain);
      sink.removeListener('cancelled', onGone);
      sink.removeListener('close', onGone);
      sink.removeListener('error', onGone);
    };
    const finishEof = () => {
      detach();
      this.attached.delete(name);
      sink.end();
    };
    const onEof = () => {
      eofSeen = true;
      flush();
    };
    const onGone = () => {
      if (timer) clearTimeout(timer);
      timer = null;
      detach();
      src.pause();
      // What was read but not sent goes back, for the next reader.
      if (pendingBytes > 0 && !src.readableEnded) src.unshift(Buffer.concat(pending, pendingBytes));
      pending = [];
      pendingBytes = 0;
      this.attached.delete(name);
    };
    src.on('data', onData);
    src.once('vrun-eof', onEof);
    sink.once('cancelled', onGone);
    sink.once('close', onGone);
    sink.once('error', onGone);
    if (this.ended.has(name) && src.readableLength === 0) onEof();
    else src.resume();
  }

  /** Writes stdin bytes; resolves when the pipe took them (backpressure for the gRPC stream). */
  async writeStdin(data: Buffer): Promise<void> {
    if (this.ptyFd !== null) return this.writePty(data);
    const s = this.stdin;
    if (!s || s.writableEnded || s.destroyed) throw precondition('stdin of this process is closed');
    if (!s.write(data)) await new Promise<void>((resolve) => {
      const done = () => {
        s.removeListener('close', done);
        s.removeListener('drain', done);
        resolve();
      };
      s.once('drain', done);
      s.once('close', done);
    });
  }

  private async writePty(data: Buffer): Promise<void> {
    const fd = this.ptyFd as number;
    let off = 0;
    while (off < data.length) {
      if (this.ptyClosed) throw precondition('the terminal of this process is closed');
      try {
        off += await new Promise<number>((resolve, reject) => write(fd, data, off, data.length - off, null, (err, n) => (err ? reject(err) : resolve(n))));
      } catch (err) {
        // uv_tty made the master non-blocking: a full input queue means "later", not failure.
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw precondition(`writing to the terminal failed: ${(err as Error).message}`);
        await sleep(5);
      }
    }
  }

  /** EOF on stdin. For a terminal, sends the EOF character (^D) the line discipline turns into EOF. */
  async closeStdin(): Promise<void> {
    if (this.ptyFd !== null) return this.writePty(Buffer.from([4]));
    const s = this.stdin;
    if (!s || s.writableEnded) return;
    await new Promise<void>((resolve) => s.end(resolve));
  }

  resize(rows: number, cols: number): void {
    if (this.ptyFd === null || this.ptyClosed) throw precondition('this process has no terminal');
    agentNative().ttySetWinsize(this.ptyFd, rows, cols);
  }

  get isTerminal(): boolean {
    return this.ptyFd !== null;
  }

  /** Releases every fd (after the process is gone and removed). */
  dispose(): void {
    this.closeChildEnds();
    this.stdin?.destroy();
    for (const s of this.outputs.values()) s.destroy();
    if (this.ptyFd !== null && !this.ptyClosed) {
      // tty.ReadStream owns and closes the fd when destroyed.
      this.ptyClosed = true;
    }
  }
}
