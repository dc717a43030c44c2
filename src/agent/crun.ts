/** Runs crun with the agent's state root and a log file, turning its failures into clear errors. */
import { spawn, type StdioOptions } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { trackOwnChild } from './own-children.js';
import { RpcError } from './rpc-error.js';

export interface CrunRunner {
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

export function crunRunner(crun: string, stateRoot: string): CrunRunner {
  return {
    async run(args, opts = {}) {
      const logFile = path.join(opts.logDir ?? stateRoot, `crun-${process.hrtime.bigint()}.log`);
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
      const log = logMessages(await readFile(logFile, 'utf8').catch(() => ''));
      await rm(logFile, { force: true });
      if (code !== 0) {
        const why = [log, err.trim()].filter(Boolean).join('; ') || `exit status ${code}`;
        throw new RpcError(status.FAILED_PRECONDITION, `crun ${args[0]} failed: ${why}`);
      }
      return out;
    },
  };
}
