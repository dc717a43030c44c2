import { VrunError } from '../../common/errors.js';
import { findSandbox } from '../../sandbox/inventory.js';
import { parseArgs } from '../args.js';
import type { Command } from '../command.js';

/**
 * Docker-shaped where it matters to scripts: State.Status/ExitCode/OOMKilled/Error, Name, Id, Config. Like
 * Docker, a name that is no container is looked up as an image.
 */
export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'Show details of containers or images as JSON',
  usage: 'vrun inspect CONTAINER|IMAGE [CONTAINER|IMAGE...]',
  async run(argv) {
    const { positionals } = parseArgs(argv, {}, { command: 'inspect', stopAtPositional: false });
    if (positionals.length === 0) throw new VrunError('"vrun inspect" requires at least one container or image');
    const out = [];
    for (const ref of positionals) {
      const s = await findSandbox(ref).catch((err: unknown) => {
        if (err instanceof VrunError && err.message.startsWith('no such container:')) return undefined;
        throw err;
      });
      if (!s) {
        out.push(await inspectImage(ref));
        continue;
      }
      out.push({
        Id: s.id,
        Name: s.name,
        Created: s.createdAt,
        Image: s.image,
        State: {
          Status: s.status === 'failed' ? 'dead' : s.status === 'creating' ? 'created' : s.status,
          Running: s.status === 'running',
          OOMKilled: s.oomKilled === true,
          Dead: s.status === 'failed',
          ExitCode: s.exitCode ?? 0,
          Error: s.error ?? '',
          StartedAt: s.startedAt ?? '',
          FinishedAt: s.finishedAt ?? '',
          Pid: s.pids.vmm ?? 0,
        },
        Config: s.config,
        Sandbox: { Backend: s.backend ?? '', Pids: s.pids, Guest: s.guest ?? {}, PhasesMs: s.phases ?? {} },
      });
    }
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return 0;
  },
};

async function inspectImage(ref: string) {
  const { imageDetails } = await import('./image-inspect.js');
  try {
    return imageDetails(ref);
  } catch (err) {
    if (err instanceof VrunError && err.message.includes('not found in the local store')) throw new VrunError(`no such container or image: ${ref.slice(0, 140)}`);
    throw err;
  }
}
