import type { StreamSession } from '../sandbox/control-client.js';
import type { TerminalSize } from '../sandbox/control-protocol.js';

/**
 * With -t on a terminal: its window size, for the attach or exec request, so the process has it from the start
 * (a first resize frame would race the start).
 */
export function initialSize(tty: boolean): { size?: TerminalSize } {
  return tty && process.stdout.isTTY ? { size: { rows: process.stdout.rows, cols: process.stdout.columns } } : {};
}

/**
 * Where a container's output goes on this side: our stdout and stderr, raw (it is the output the user asked
 * for). If one of them breaks (EPIPE: the reader went away, or EIO on a hung-up terminal), that stream gets no
 * more writes, and the error neither crashes the CLI nor ends the container.
 */
export function localOutput(): { stdout: (b: Buffer) => void; stderr: (b: Buffer) => void } {
  const guarded = (s: NodeJS.WriteStream) => {
    let broken = false;
    s.on('error', () => {
      broken = true;
    });
    return (b: Buffer) => {
      if (!broken && !s.destroyed) s.write(b);
    };
  };
  return { stdout: guarded(process.stdout), stderr: guarded(process.stderr) };
}

/**
 * Wires the local terminal to a container process: stdin into it (-i), raw mode and window size (-t),
 * SIGINT/SIGTERM/SIGHUP forwarded (without -t; with -t the terminal sends ^C as a byte, like Docker).
 * Returns a function that restores the terminal.
 */
export function wireLocalIo(session: StreamSession, opts: { stdin: boolean; tty: boolean }): () => void {
  const undo: (() => void)[] = [];
  const stdin = process.stdin;
  if (opts.tty && stdin.isTTY) {
    stdin.setRawMode(true);
    undo.push(() => stdin.setRawMode(false));
  }
  if (opts.tty && process.stdout.isTTY) {
    const sendSize = () => session.sendResize(process.stdout.rows, process.stdout.columns);
    sendSize();
    process.on('SIGWINCH', sendSize);
    undo.push(() => process.off('SIGWINCH', sendSize));
  }
  if (opts.stdin) {
    const onData = (b: Buffer) => session.sendStdin(b);
    const onEnd = () => session.sendStdinEof();
    // Our stdin failing (EIO from a terminal that went away) is its end, for the container too.
    const onError = () => session.sendStdinEof();
    stdin.on('data', onData);
    stdin.once('end', onEnd);
    stdin.on('error', onError);
    undo.push(() => {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      stdin.off('error', onError);
      stdin.on('error', () => undefined);
      stdin.pause();
      stdin.destroy();
    });
  }
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const h = () => session.sendSignal(sig);
    process.on(sig, h);
    undo.push(() => process.off(sig, h));
  }
  return () => {
    for (const u of undo.reverse()) u();
  };
}

/** Writes and resolves when the bytes reached the OS (so the exit code never outruns the output). */
export function flushStdio(): Promise<void> {
  // A stream that broke will never drain: it ends the wait as well.
  const drain = (s: NodeJS.WriteStream) =>
    new Promise<void>((r) => {
      if (!s.writableNeedDrain || s.destroyed) return r();
      s.once('drain', () => r());
      s.once('error', () => r());
      s.once('close', () => r());
    });
  return Promise.all([drain(process.stdout), drain(process.stderr)]).then(() => undefined);
}
