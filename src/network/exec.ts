import { spawn } from 'node:child_process';
import { VrunError } from '../common/errors.js';

/**
 * Runs the host tools networking needs (ip, tc, iptables-save, CNI plugins), optionally inside a network
 * namespace. Node cannot setns(2) its own threads safely, so a child enters the namespace with nsenter(1),
 * which works for any nsfs path (not only the names `ip netns exec` knows). Output is capped because a CNI
 * plugin is a third-party binary reading operator config, and a runaway tool must not grow our heap.
 */
export interface RunOptions {
  /** nsfs path of the network namespace to run in; the caller's own when absent. */
  netns?: string;
  input?: string;
  /** The child's whole environment (CNI plugins get exactly their protocol variables). Default: PATH only. */
  env?: Record<string, string>;
  timeoutMs?: number;
  /** Per stream; what is past it is dropped and `truncated` is set. */
  maxOutputBytes?: number;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Some output was past maxOutputBytes. */
  truncated: boolean;
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function baseEnv(): Record<string, string> {
  return { PATH: process.env.PATH ?? DEFAULT_PATH };
}

export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [cmd, ...args] = opts.netns ? ['nsenter', `--net=${opts.netns}`, '--', ...argv] : argv;
  if (cmd === undefined) throw new Error('run: empty argv');
  const max = opts.maxOutputBytes ?? 1 << 20;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? baseEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let truncated = false;
    const collect = (stream: NodeJS.ReadableStream): Buffer[] => {
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on('data', (b: Buffer) => {
        if (size + b.length > max) {
          truncated = true;
          b = b.subarray(0, Math.max(0, max - size));
        }
        size += b.length;
        if (b.length > 0) chunks.push(b);
      });
      return chunks;
    };
    const out = collect(child.stdout);
    const err = collect(child.stderr);
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), truncated });
    });
    // A child that exits without reading its input makes the write fail with EPIPE; its exit status tells.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** The last non-empty line of a tool's stderr, shortened: enough for a one-line error. */
export function lastLine(text: string, max = 300): string {
  const line = text.split('\n').map((l) => l.trim()).filter(Boolean).pop() ?? '';
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

/** Runs a tool that must succeed; a failure names the command and what the tool said. */
export async function runChecked(argv: readonly string[], opts: RunOptions & { what?: string } = {}): Promise<string> {
  const r = await run(argv, opts).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') throw new VrunError(`${argv[0]} not found (needed to ${opts.what ?? 'set up pod networking'})`, { kind: 'precondition', cause: e });
    throw e;
  });
  if (r.code !== 0) {
    const how = r.signal ? `was killed by ${r.signal}` : `exited with ${r.code}`;
    const said = lastLine(r.stderr) || lastLine(r.stdout);
    throw new VrunError(`${opts.what ? `${opts.what}: ` : ''}\`${argv.join(' ')}\` ${how}${said ? `: ${said}` : ''}`, { kind: 'internal' });
  }
  return r.stdout;
}
