/**
 * What two crun commands do, done by the agent itself where that is safe: each crun process costs a fork of
 * the whole agent and tens of milliseconds.
 */
import { closeSync, constants, openSync, rmSync, writeSync } from 'node:fs';
import { rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../common/log.js';
import type { Container } from './container-state.js';
import type { CrunRunner } from './crun.js';

/**
 * What `crun start` does, minus a 30-50 ms crun process: the created init blocks reading the state dir's
 * exec.fifo; crun start opens it for writing, unlinks it (how crun later tells "running" from "created")
 * and writes one byte, upon which the init execs the user's program. Only used without poststart hooks
 * (crun runs those). Returns false when there is no fifo or no reader on it: the caller runs `crun start`.
 */
export function releaseExecFifo(crunRoot: string, id: string): boolean {
  const fifo = path.join(crunRoot, id, 'exec.fifo');
  let fd: number;
  try {
    // Non-blocking: a fifo without a reader fails (ENXIO) instead of hanging the agent. Synchronous: the
    // fifo is on the agent's tmpfs, so these calls cannot wait on anything.
    fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch {
    return false;
  }
  try {
    rmSync(fifo, { force: true });
    writeSync(fd, Buffer.alloc(1));
    return true;
  } finally {
    closeSync(fd);
  }
}

/**
 * What `crun delete` does for a stopped container without poststop hooks, minus a 25-35 ms crun process
 * (and the fork of the agent that starts it): remove its cgroup and crun's state directory. Anything
 * else (a cgroup still holding processes, hooks to run) goes to `crun delete --force`.
 */
export async function cleanUpContainer(c: Container, crunRoot: string, crun: CrunRunner, log: Logger): Promise<void> {
  let done = false;
  if (c.init.state.status === 'exited' && !c.hasPoststopHooks) {
    try {
      await rmdir(c.cgroupDir).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      await rm(path.join(crunRoot, c.id), { recursive: true, force: true });
      done = true;
    } catch (err) {
      log.debug({ id: c.id, err: (err as Error).message }, 'cleanup by hand failed; running crun delete');
    }
  }
  // Spawning crun costs a fork of the whole agent: do it after the remove's reply has gone out.
  if (!done) await new Promise((r) => setTimeout(r, 10)).then(() => crun.run(['delete', '--force', c.id]));
  await rm(c.bundle, { recursive: true, force: true });
}
