/** Runs crun with the agent's state root and a log file, turning its failures into clear errors. */
import { spawn, type StdioOptions } from 'node:child_process';
import { statSync, truncateSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { trackOwnChild } from './own-children.js';
import { RpcError } from './rpc-error.js';

export interface CrunRunner {
  /** `logDir`: the container's bundle, which keeps crun's log (appended to by every call). */
  run(args: string[], opts?: { stdio?: [number, number, number] | 'ignore'; logDir?: string; timeoutMs?: number }): Promise<string>;
}

/** crun's JSON log lines -> their messages. */
function logMessages(text: string): string {
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
  return msgs.join('; ');
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

export function crunRunner(crun: string, stateRoot: string): CrunRunner {
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
      const stdio: StdioOptions = opts.stdio === undefined ? ['ignore', 'pipe', 'pipe'] : opts.stdio;
      const child = trackOwnChild(spawn(crun, full, { stdio }));
      let out = '';
      let err = '';
      child.stdout?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-65536)));
      child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4096)));
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
      const code = await new Promise<number | null>((resolve, reject) => {
        child.once('error', reject);
        child.once('close', (c) => resolve(c));
      }).finally(() => clearTimeout(timer));
      if (code === 0) {
        if (!bundleLog) await rm(logFile, { force: true });
        return out;
      }
      const text = await readFile(logFile).then((b) => b.subarray(logStart, logStart + 65536).toString(), () => '');
      if (!bundleLog) await rm(logFile, { force: true });
      const why = [logMessages(text), err.trim()].filter(Boolean).join('; ') || `exit status ${code}`;
      throw new RpcError(status.FAILED_PRECONDITION, `crun ${args[0]} failed: ${why}`);
    },
  };
}
