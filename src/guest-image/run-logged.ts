import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { VrunError } from '../common/errors.js';

/**
 * Runs a build step with its output going to a log file (a kernel build prints thousands of lines),
 * counting output lines so the progress display can show movement. On failure the error carries the
 * log's tail, which is what a person needs to see.
 */
export async function runLogged(
  cmd: string,
  args: string[],
  opts: { cwd?: string; logFile: string; env?: NodeJS.ProcessEnv; onLine?: (lines: number) => void },
): Promise<void> {
  const log = createWriteStream(opts.logFile, { flags: 'a' });
  log.write(`$ ${cmd} ${args.join(' ')}\n`);
  let lines = 0;
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const onData = (chunk: Buffer) => {
      log.write(chunk);
      for (const b of chunk) if (b === 10) lines++;
      opts.onLine?.(lines);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('close', (c, sig) => resolve(c ?? (sig ? 128 : 1)));
  });
  await new Promise<void>((r) => log.end(r));
  if (code !== 0) {
    const text = await readFile(opts.logFile, 'utf8').catch(() => '');
    const tail = text.split('\n').slice(-25).join('\n');
    throw new VrunError(`${cmd} ${args.slice(0, 4).join(' ')} failed (exit ${code}); log: ${opts.logFile}\n${tail}`);
  }
}

export async function capture(cmd: string, args: string[], cwd?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new VrunError(`${cmd} ${args.join(' ')} failed: ${err.trim()}`))));
  });
}
