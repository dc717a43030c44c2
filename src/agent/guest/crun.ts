/** Runs crun with the agent's state root and a log file, turning its failures into clear errors. */
import { statSync, truncateSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { type ErrorKind, VrunError, errorMessage } from '../../common/errors.js';
import { agentNative } from './native-ops.js';
import type { Reaper } from './reaper.js';

export interface CrunRunner {
  /** `logDir`: the container's bundle, which keeps crun's log (appended to by every call). */
  run(args: string[], opts?: { stdio?: [number, number, number] | 'ignore'; logDir?: string; timeoutMs?: number }): Promise<string>;
}

/** crun's JSON log lines -> their messages. */
function logMessages(text: string): string[] {
  const msgs: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const rec = JSON.parse(line) as { msg?: unknown };
      msgs.push(typeof rec.msg === 'string' ? rec.msg : line);
    } catch {
      msgs.push(line);
    }
  }
  return msgs;
}

/**
 * What crun 1.8.1 says when the container's command cannot be run. It looks the command up in the new
 * container before it exists (container_init_setup), so `crun create` and `crun exec` fail with one of:
 *   executable file `CMD` not found in $PATH: No such file or directory   (no such file, also for a path)
 *   open executable: Permission denied                                     (no execute permission)
 *   open executable: Operation not permitted                               (not a regular file: a directory)
 */
const COMMAND_NOT_FOUND = /^executable file `.*` not found in \$PATH: No such file or directory$/s;
const COMMAND_NOT_EXECUTABLE = /^open executable: (Permission denied|Operation not permitted)$/;

/**
 * The kind of a failed crun call, from the messages it logged: the container's command missing or not
 * executable (Docker's 127 and 126), otherwise a failed precondition of the container as before.
 */
export function crunFailureKind(messages: readonly string[]): ErrorKind {
  for (const m of messages) {
    if (COMMAND_NOT_FOUND.test(m)) return 'command-not-found';
    if (COMMAND_NOT_EXECUTABLE.test(m)) return 'command-not-executable';
  }
  return 'precondition';
}

/** A bundle's crun log is cut back to nothing once it holds this much (failures only add a line each). */
const MAX_BUNDLE_LOG_BYTES = 1024 * 1024;

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/**
 * crun is started by procSpawn (a vfork-style clone: nothing of the agent is copied), not Node's spawn, which
 * forks the whole agent: 6.5-10 ms per process on this host, growing with the heap, and far more in a TCG
 * guest. The agent's Reaper collects it.
 */
export function crunRunner(crun: string, stateRoot: string, reaper: Reaper): CrunRunner {
  const native = agentNative();
  return {
    async run(args, opts = {}) {
      // crun appends to its log: a bundle keeps one (removed with the bundle), and a failure reports what
      // was appended during its call. A successful call costs no log I/O beyond a stat of the tmpfs file.
      const bundleLog = opts.logDir !== undefined;
      const logFile = bundleLog ? path.join(opts.logDir as string, 'crun.log') : path.join(stateRoot, `crun-${process.hrtime.bigint()}.log`);
      let logStart = bundleLog ? sizeOf(logFile) : 0;
      if (logStart > MAX_BUNDLE_LOG_BYTES) {
        truncateSync(logFile, 0);
        logStart = 0;
      }
      const full = ['--root', stateRoot, '--log', `file:${logFile}`, '--log-format', 'json', ...args];
      let out: Promise<string> = Promise.resolve('');
      let err: Promise<string> = Promise.resolve('');
      let stdio: [number, number, number];
      let ours: number[] = [];
      if (opts.stdio === undefined) {
        const [outR, outW] = native.procPipe();
        const [errR, errW] = native.procPipe();
        out = readAll(outR, 65536);
        err = readAll(errR, 4096);
        stdio = [-1, outW, errW];
        ours = [outW, errW];
      } else {
        stdio = opts.stdio === 'ignore' ? [-1, -1, -1] : opts.stdio;
      }
      let pid: number;
      try {
        pid = native.procSpawn(crun, ['crun', ...full], stdio);
      } catch (e) {
        throw new VrunError(`crun ${args[0]} failed: cannot run ${crun}: ${errorMessage(e)}`, { kind: 'precondition' });
      } finally {
        // The child has its copies; the pipes end when it (and anything it passed them to) is done.
        for (const fd of ours) native.fdClose(fd);
      }
      const exited = reaper.watch(pid);
      // An interval, not a timeout: it also keeps the event loop alive until the child is collected (the
      // SIGCHLD handler alone does not).
      const timer = setInterval(() => {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Exited in the meantime: its exit is on the way.
        }
      }, opts.timeoutMs ?? 60_000);
      const { code } = await exited.finally(() => clearInterval(timer));
      const [stdout, stderr] = await Promise.all([out, err]);
      if (code === 0) {
        if (!bundleLog) await rm(logFile, { force: true });
        return stdout;
      }
      const text = await readFile(logFile).then((b) => b.subarray(logStart, logStart + 65536).toString(), () => '');
      if (!bundleLog) await rm(logFile, { force: true });
      const messages = logMessages(text);
      const logged = messages.join('; ');
      // crun prints its error to stderr as well as to the log: say it once.
      const said = stderr.trim();
      const why = [logged, logged.includes(said) ? '' : said].filter(Boolean).join('; ') || `exit status ${code}`;
      throw new VrunError(`crun ${args[0]} failed: ${why}`, { kind: crunFailureKind([...messages, ...said.split('\n')]) });
    },
  };
}

/** Everything a pipe gives until its end, keeping the last `max` characters. */
function readAll(fd: number, max: number): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const socket = new net.Socket({ fd, readable: true, writable: false });
    socket.on('data', (d: Buffer) => (text = (text + d.toString()).slice(-max)));
    socket.once('error', () => socket.destroy());
    socket.once('close', () => resolve(text));
  });
}
