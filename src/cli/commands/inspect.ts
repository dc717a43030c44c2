import { VrunError } from '../../common/errors.js';
import { findSandbox } from '../../sandbox/inventory.js';
import { parseArgs } from '../args.js';
import type { Command } from '../command.js';

/** Docker-shaped where it matters to scripts: State.Status/ExitCode/OOMKilled/Error, Name, Id, Config. */
export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'Show details of containers as JSON',
  usage: 'vrun inspect CONTAINER [CONTAINER...]',
  async run(argv) {
    const { positionals } = parseArgs(argv, {}, { command: 'inspect', stopAtPositional: false });
    if (positionals.length === 0) throw new VrunError('"vrun inspect" requires at least one container');
    const out = [];
    for (const ref of positionals) {
      const s = await findSandbox(ref);
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
