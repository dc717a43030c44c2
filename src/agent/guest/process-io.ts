/**
 * The stdio of one container process as the agent holds it: real pipes (stdin write end, stdout/stderr
 * read ends) or a pty master. Output waits in the pipe until a reader attaches, so a process that nobody
 * reads blocks on its own pipe instead of growing the agent's memory.
 */
import { closeSync, write } from 'node:fs';
import net from 'node:net';
import tty from 'node:tty';
import { setTimeout as sleep } from 'node:timers/promises';
import { agentNative } from './native-ops.js';
import { OUTPUT_CHUNK_HEADROOM, wireChunkCopy, wireChunkInPlace, type WireChunk } from './output-chunk-wire.js';
import { precondition } from '../protocol/rpc-error.js';

export type OutputName = 'stdout' | 'stderr';

/** The largest read, and so the largest message (well under the gRPC message bound). */
const READ_BYTES = 256 * 1024;
/** Reads shorter than this are copied out, and the read buffer is used again. */
const COPY_BELOW = 16 * 1024;
/**
 * After a read that emptied the pipe, reading rests this long: a fast writer's small writes (4 KiB from
 * busybox, a line from most programs) then reach the agent as one read and one message instead of
 * thousands. Interactive output is sent at once; only the next read waits.
 */
const REST_MS = 1;
/** Output pipes are enlarged (from 64 KiB) so a writer keeps going while the agent rests or sends. */
const OUTPUT_PIPE_BYTES = 1024 * 1024;

/** What an output reader needs from its sink (a gRPC server stream). */
export interface OutputSink {
  /**
   * `done` runs once the chunk's bytes went out to the connection (its read buffer may then be reused:
   * grpc-js sends it without a copy, see framed-output-send.ts), or once the sink gave up on it before.
   */
  write(chunk: WireChunk, done: () => void): boolean;
  end(): void;
  on(event: 'drain', cb: () => void): unknown;
  once(event: 'cancelled' | 'close' | 'error', cb: () => void): unknown;
  removeListener(event: 'drain' | 'cancelled' | 'close' | 'error', cb: () => void): unknown;
}

/** The fds the OCI runtime hands to the process (closed in the agent once the runtime has them). */
export interface ChildStdio {
  stdin: number;
  stdout: number;
  stderr: number;
}

/** One output of a process: the socket reading it, and who gets what it reads. */
interface Output {
  socket: net.Socket | null;
  /** Read while no reader was attached (a reader left mid-read): delivered first to the next one. */
  held: Held[];
  eof: boolean;
  sink: OutputSink | null;
  detach: (() => void) | null;
  /** The sink's buffer is full: reading waits for its 'drain'. */
  blocked: boolean;
  /** Read buffers the current sink holds (see SLABS_IN_FLIGHT). */
  inFlight: number;
  /** Changes with every sink, so a buffer given to an earlier one is not counted against the next. */
  sinkEpoch: number;
  rest: NodeJS.Timeout | null;
  reading: boolean;
}

interface Held {
  chunk: WireChunk;
  release: () => void;
  /** The chunk lies in a read buffer (counted in flight until released), not in a copy. */
  slab: boolean;
}

/**
 * Read buffers handed to the sink and not yet back (sent on to the socket): reading waits at this many.
 * grpc-js writes one message at a time, so a few keep it busy; more would only queue in its stream while
 * each needs a fresh buffer.
 */
const SLABS_IN_FLIGHT = 4;
/**
 * Read buffers kept per output for reuse. A fresh 256 KiB buffer costs page faults and, through V8's
 * external memory accounting, garbage collections: reusing them keeps a stream's reads allocation-free.
 */
const SPARE_SLABS = SLABS_IN_FLIGHT;

type SocketWithOnRead = new (opts: net.SocketConstructorOpts & { onread: net.OnReadOpts }) => net.Socket;

export class ProcessIo {
  private stdin: net.Socket | null = null;
  private readonly outputs = new Map<OutputName, Output>();
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
    io.track('stdout', (onread) => new (net.Socket as SocketWithOnRead)({ fd: outR, readable: true, writable: false, onread }));
    io.track('stderr', (onread) => new (net.Socket as SocketWithOnRead)({ fd: errR, readable: true, writable: false, onread }));
    io.childEnds = [inR, outW, errW];
    return { io, child: { stdin: inR, stdout: outW, stderr: errW } };
  }

  /** A terminal: the pty master crun sent over the console socket. Output arrives on stdout only. */
  static terminal(masterFd: number): ProcessIo {
    const io = new ProcessIo();
    io.ptyFd = masterFd;
    io.track('stdout', (onread) => new tty.ReadStream(masterFd, { onread } as net.SocketConstructorOpts));
    io.outputs.set('stderr', ProcessIo.endedOutput());
    return io;
  }

  /** An io with no streams (a process whose stdio setup failed). */
  static none(): ProcessIo {
    const io = new ProcessIo();
    io.outputs.set('stdout', ProcessIo.endedOutput());
    io.outputs.set('stderr', ProcessIo.endedOutput());
    return io;
  }

  private static endedOutput(): Output {
    return { socket: null, held: [], eof: true, sink: null, detach: null, blocked: false, inFlight: 0, sinkEpoch: 0, rest: null, reading: false };
  }

  /**
   * Reads go straight into buffers with room for the message headers in front (no per-read allocation by
   * Node, no copy on the way to the connection). A socket in this mode reads only while resumed.
   */
  private track(name: OutputName, open: (onread: net.OnReadOpts) => net.Socket): void {
    const o: Output = { socket: null, held: [], eof: false, sink: null, detach: null, blocked: false, inFlight: 0, sinkEpoch: 0, rest: null, reading: true };
    const slabBytes = OUTPUT_CHUNK_HEADROOM + READ_BYTES;
    const spare: Buffer[] = [];
    let slab: Buffer = Buffer.allocUnsafe(slabBytes);
    let handedOver = false;
    const noop = () => undefined;
    const socket = open({
      buffer: () => {
        if (handedOver) {
          slab = spare.pop() ?? Buffer.allocUnsafe(slabBytes);
          handedOver = false;
        }
        return slab.subarray(OUTPUT_CHUNK_HEADROOM);
      },
      callback: (n) => {
        if (n < COPY_BELOW) this.deliver(o, { chunk: wireChunkCopy(slab.subarray(OUTPUT_CHUNK_HEADROOM, OUTPUT_CHUNK_HEADROOM + n)), release: noop, slab: false });
        else {
          const taken = slab;
          handedOver = true;
          const release = () => {
            if (o.socket && spare.length < SPARE_SLABS) spare.push(taken);
          };
          this.deliver(o, { chunk: wireChunkInPlace(taken, OUTPUT_CHUNK_HEADROOM, n), release, slab: true });
        }
        if (n < READ_BYTES && !o.eof) o.rest = setTimeout(() => this.endRest(o), REST_MS);
        o.reading = this.wantsData(o);
        return o.reading;
      },
    });
    o.socket = socket;
    this.outputs.set(name, o);
    this.updateReading(o);
    const done = () => {
      o.eof = true;
      o.reading = false;
      if (o.rest) clearTimeout(o.rest);
      o.rest = null;
      if (o.sink && o.held.length === 0) this.finish(o);
    };
    socket.once('end', done);
    // A pty master reads EIO once every slave fd is closed: that is its end of file.
    socket.on('error', done);
    socket.once('close', () => {
      // The fd is closed now (a tty stream closes the pty master it owns): nothing may use it again, and
      // the read buffers go (a container keeps the io of every exec it ran).
      if (this.ptyFd !== null) this.ptyClosed = true;
      o.socket = null;
      spare.length = 0;
      slab = Buffer.alloc(0);
    });
  }

  private wantsData(o: Output): boolean {
    return o.sink !== null && !o.blocked && o.inFlight < SLABS_IN_FLIGHT && o.rest === null && !o.eof && o.held.length === 0;
  }

  private updateReading(o: Output): void {
    const want = this.wantsData(o);
    if (want === o.reading || !o.socket || o.socket.destroyed) return;
    o.reading = want;
    if (want) o.socket.resume();
    else o.socket.pause();
  }

  private endRest(o: Output): void {
    o.rest = null;
    this.updateReading(o);
  }

  private deliver(o: Output, h: Held): void {
    if (!o.sink) {
      o.held.push(h);
      return;
    }
    let done = h.release;
    if (h.slab) {
      const epoch = o.sinkEpoch;
      let released = false;
      o.inFlight++;
      done = () => {
        if (released) return;
        released = true;
        h.release();
        if (epoch !== o.sinkEpoch) return;
        o.inFlight--;
        this.updateReading(o);
      };
    }
    if (!o.sink.write(h.chunk, done)) o.blocked = true;
  }

  /** Sends what was held while the sink takes it; ends the sink at EOF. */
  private pump(o: Output): void {
    while (o.sink && !o.blocked && o.held.length > 0) this.deliver(o, o.held.shift() as Held);
    if (o.sink && o.eof && o.held.length === 0) this.finish(o);
    else this.updateReading(o);
  }

  private finish(o: Output): void {
    const sink = o.sink;
    o.detach?.();
    sink?.end();
  }

  /** Closes the agent's copies of the child's ends, once the runtime has spawned with them. */
  closeChildEnds(): void {
    for (const fd of this.childEnds) closeSync(fd);
    this.childEnds = [];
  }

  /** Streams one output into `sink` until EOF (then ends it) or until the sink goes away (then detaches). */
  attachOutput(name: OutputName, sink: OutputSink): void {
    const o = this.outputs.get(name);
    if (!o || (o.eof && o.held.length === 0)) {
      sink.end();
      return;
    }
    if (o.sink) throw precondition(`${name} of this process already has a reader`);
    const onDrain = () => {
      o.blocked = false;
      this.pump(o);
    };
    const onGone = () => {
      o.detach?.();
      this.updateReading(o);
    };
    o.sink = sink;
    o.blocked = false;
    o.detach = () => {
      sink.removeListener('drain', onDrain);
      sink.removeListener('cancelled', onGone);
      sink.removeListener('close', onGone);
      sink.removeListener('error', onGone);
      o.sink = null;
      o.detach = null;
      o.blocked = false;
      // A sink that went away may never give its buffers back; they are not waited for.
      o.inFlight = 0;
      o.sinkEpoch++;
    };
    sink.on('drain', onDrain);
    sink.once('cancelled', onGone);
    sink.once('close', onGone);
    sink.once('error', onGone);
    this.pump(o);
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
    for (const o of this.outputs.values()) {
      if (o.rest) clearTimeout(o.rest);
      o.rest = null;
      o.detach?.();
      o.socket?.destroy();
    }
    if (this.ptyFd !== null && !this.ptyClosed) {
      // tty.ReadStream owns and closes the fd when destroyed.
      this.ptyClosed = true;
    }
  }
}
