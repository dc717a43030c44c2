import { close, constants, open, openSync } from 'node:fs';
import { promisify } from 'node:util';
import net from 'node:net';
import type { Readable } from 'node:stream';
import type { AgentClient, ProcessRef } from '../agent/host/client.js';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';

/**
 * One process's stdio, wired between the FIFOs containerd hands the shim and the agent's stdio streams.
 *
 * Output FIFOs are opened read-write and non-blocking: the open never waits for a reader (containerd may
 * attach later, and a dead reader must not hang the shim), the pipe buffer gives backpressure, and our
 * close is the only writer's close, so the reader sees EOF once the output is drained. stdin is opened
 * read-only in the thread pool, which waits for containerd's writer; containerd closing its end is EOF.
 */
export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

const OUTPUT_DRAIN_LIMIT_MS = 5000;

const openFd = promisify(open);
const closeFd = promisify(close);

function openOutput(p: string): net.Socket {
  // Non-blocking open of a FIFO returns at once; the socket owns the descriptor from here on.
  const fd = openSync(p, constants.O_RDWR | constants.O_NONBLOCK);
  return new net.Socket({ fd, readable: false, writable: true });
}

export class FifoStdio {
  private readonly outputs: Promise<void>[] = [];
  private stdinDone = false;

  private constructor(
    private readonly paths: StdioPaths,
    private readonly log: Logger,
  ) {}

  /** Connects the process `ref` (already created in the guest) to the FIFOs. */
  static async attach(paths: StdioPaths, agent: AgentClient, ref: ProcessRef, log: Logger): Promise<FifoStdio> {
    const io = new FifoStdio(paths, log);
    const streams: ['stdout' | 'stderr', string][] = [['stdout', paths.stdout]];
    if (!paths.terminal) streams.push(['stderr', paths.stderr]);
    for (const [which, fifo] of streams) {
      if (fifo === '') continue;
      const out = openOutput(fifo);
      io.outputs.push(io.pump(agent.readOutput(ref, which), out, which));
    }
    if (paths.stdin === '') {
      io.stdinDone = true;
      await agent.closeStdin(ref).catch((err: unknown) => log.debug({ err: errorMessage(err) }, 'closing stdin'));
    } else {
      void io.pumpStdin(agent, ref);
    }
    return io;
  }

  private pump(from: Readable, to: net.Socket, which: string): Promise<void> {
    return new Promise<void>((resolve) => {
      const finish = () => {
        to.end();
        to.once('close', () => resolve());
        setTimeout(() => {
          to.destroy();
          resolve();
        }, 1000).unref();
      };
      to.on('error', (err) => {
        this.log.debug({ err: errorMessage(err), which }, 'output FIFO closed by its reader');
        from.destroy();
        resolve();
      });
      from.on('error', (err) => {
        this.log.debug({ err: errorMessage(err), which }, 'agent output stream ended with an error');
        finish();
      });
      from.on('end', finish);
      from.pipe(to, { end: false });
    });
  }

  private async pumpStdin(agent: AgentClient, ref: ProcessRef): Promise<void> {
    let fd: number;
    try {
      fd = await openFd(this.paths.stdin, constants.O_RDONLY);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'cannot open the stdin FIFO');
      return;
    }
    if (this.stdinDone) {
      await closeFd(fd);
      return;
    }
    const input = new net.Socket({ fd, readable: true, writable: false });
    const sink = agent.writeStdin(ref);
    sink.on('error', (err) => this.log.debug({ err: errorMessage(err) }, 'stdin stream to the agent ended'));
    input.on('error', () => input.destroy());
    input.pipe(sink);
  }

  /** Resolves once the process's output reached the FIFOs (bounded: a stuck reader cannot hold an exit back). */
  async drained(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(this.outputs), new Promise<void>((r) => (timer = setTimeout(r, OUTPUT_DRAIN_LIMIT_MS)))]);
    clearTimeout(timer);
  }

  /**
   * After the process exited: a stdin open still waiting for a writer holds a thread-pool thread, so
   * become the writer for a moment to let it return.
   */
  async release(): Promise<void> {
    if (this.stdinDone || this.paths.stdin === '') return;
    this.stdinDone = true;
    try {
      await closeFd(await openFd(this.paths.stdin, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      // no waiting reader (ENXIO) or the FIFO is gone: nothing is stuck
    }
  }
}
