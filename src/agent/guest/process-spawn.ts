/** Starting a container process through crun with fresh stdio, and reading the pid crun wrote. */
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { status } from '@grpc/grpc-js';
import { agentNative } from './native-ops.js';
import { ProcessIo } from './process-io.js';
import { RpcError } from '../protocol/rpc-error.js';

const CONSOLE_TIMEOUT_MS = 30_000;

/**
 * Starts a crun command that creates a process with fresh stdio: pipes handed over as its fds, or a
 * console socket (at `consoleSocket()`) on which crun sends the pty master.
 */
export async function spawnWithStdio(
  terminal: boolean,
  consoleSocket: () => string,
  run: (extra: string[], stdio: [number, number, number] | 'ignore') => Promise<string>,
  pidFile: string,
): Promise<{ io: ProcessIo; pid: number }> {
  let io: ProcessIo;
  if (terminal) {
    const native = agentNative();
    const sock = consoleSocket();
    const listenFd = native.fdListenUnix(sock);
    try {
      const master = native.fdRecvFromListener(listenFd, CONSOLE_TIMEOUT_MS);
      master.catch(() => undefined);
      await run(['--console-socket', sock], 'ignore');
      io = ProcessIo.terminal(await master);
    } finally {
      native.fdClose(listenFd);
      await rm(sock, { force: true });
    }
  } else {
    const p = ProcessIo.pipes();
    try {
      await run([], [p.child.stdin, p.child.stdout, p.child.stderr]);
    } catch (err) {
      p.io.dispose();
      throw err;
    }
    p.io.closeChildEnds();
    io = p.io;
  }
  let pidText = '';
  try {
    pidText = readFileSync(pidFile, 'utf8');
  } catch {
    // reported below
  }
  const pid = Number(pidText.trim());
  if (!Number.isSafeInteger(pid) || pid <= 1) {
    io.dispose();
    throw new RpcError(status.INTERNAL, `crun wrote no usable pid to ${pidFile}`);
  }
  return { io, pid };
}
