import { randomBytes } from 'node:crypto';
import type { Writable } from 'node:stream';
import type { AgentClient } from '../agent/host/client.js';
import type { WaitResult } from '../agent/protocol/process.js';
import { VrunError, errorKind } from '../common/errors.js';
import type { OciProcess, OciSpec } from '../common/oci-spec.js';

/**
 * A process started in the sandbox's running container (`vrun exec`), and what a person is told when the guest
 * cannot run a command.
 */
export interface OutputSink {
  stdout(chunk: Buffer): void;
  stderr(chunk: Buffer): void;
}

export interface ExecRequest {
  args: string[];
  env: string[];
  workdir?: string;
  user?: string;
  tty: boolean;
  /** With tty: the client's window, the terminal's size from the start (OCI process.consoleSize). */
  size?: { rows: number; cols: number };
}

/**
 * Runs `req` beside the container's init, from its spec. A `-u` is resolved by the agent, in the guest, against
 * the container's own /etc/passwd and /etc/group: the guest can change those files while it runs.
 */
export async function startExec(
  agent: AgentClient,
  spec: OciSpec,
  containerId: string,
  req: ExecRequest,
  stdin: boolean,
  sink: OutputSink,
): Promise<{ execId: string; stdin?: Writable; wait: Promise<WaitResult> }> {
  const execId = `exec-${randomBytes(6).toString('hex')}`;
  const proc: OciProcess = {
    ...spec.process,
    args: req.args,
    env: req.env.length > 0 ? mergeEnvList(spec.process.env, req.env) : spec.process.env,
    cwd: req.workdir ?? spec.process.cwd,
    terminal: req.tty,
    ...(req.tty && req.size ? { consoleSize: { height: req.size.rows, width: req.size.cols } } : {}),
  };
  await agent.execProcess({ containerId, execId, process: proc, stdio: req.tty ? 'terminal' : 'pipes', ...(req.user !== undefined ? { userSpec: req.user } : {}) }).catch((err: unknown) => {
    throw commandError(err, req.args[0] ?? '');
  });
  const ref = { containerId, execId };
  const outs: Promise<void>[] = (req.tty ? (['stdout'] as const) : (['stdout', 'stderr'] as const)).map(
    (which) =>
      new Promise<void>((resolve) => {
        const s = agent.readOutput(ref, which);
        s.on('data', (c: Buffer) => sink[which](c));
        s.on('end', resolve);
        s.on('error', () => resolve());
      }),
  );
  let stdinStream: Writable | undefined;
  if (stdin) {
    stdinStream = agent.writeStdin(ref);
    stdinStream.on('error', () => undefined);
  } else await agent.closeStdin(ref).catch(() => undefined);
  const wait = agent.waitProcess(ref).then(async (r) => {
    await Promise.race([Promise.all(outs), new Promise((res) => setTimeout(res, 5000))]);
    return r;
  });
  return { execId, stdin: stdinStream, wait };
}

/**
 * What a person is told when the guest could not run the container's command (kinds the agent read from
 * crun): Docker's words and exit codes, naming the command as the host sent it, not as the guest echoed it.
 */
export function commandError(err: unknown, command: string): unknown {
  const kind = errorKind(err);
  const name = command.slice(0, 256);
  if (kind === 'command-not-found') return new VrunError(`${name}: command not found in the container`, { kind, cause: err });
  if (kind === 'command-not-executable') return new VrunError(`${name}: permission denied: not an executable file in the container`, { kind, cause: err });
  return err;
}

function mergeEnvList(base: string[] | undefined, extra: string[]): string[] {
  const byName = new Map<string, string>();
  for (const e of [...(base ?? []), ...extra]) byName.set(e.split('=')[0] ?? e, e);
  return [...byName.values()];
}
