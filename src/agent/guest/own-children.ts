/**
 * The processes the agent spawned through Node (mount, ...; crun goes through procSpawn and the reaper).
 * libuv reaps those itself; the reaper must never wait for them, or libuv would lose their exit. Everything
 * else that becomes the agent's child (it is a subreaper) is the reaper's to collect.
 */
import { execFile, type ChildProcess } from 'node:child_process';

const own = new Set<number>();

export function trackOwnChild(child: ChildProcess): ChildProcess {
  const pid = child.pid;
  if (pid !== undefined) {
    own.add(pid);
    child.once('exit', () => own.delete(pid));
  }
  return child;
}

export function isOwnChild(pid: number): boolean {
  return own.has(pid);
}

/** execFile, tracked; rejects with the command's stderr in the message. */
export function runTracked(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    trackOwnChild(
      execFile(cmd, args, { maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) reject(Object.assign(err, { stderr }));
        else resolve({ stdout, stderr });
      }),
    );
  });
}
