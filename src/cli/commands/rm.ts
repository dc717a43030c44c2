import { VrunError } from '../../common/errors.js';
import { terminalSafeError } from '../../common/terminal-text.js';
import { findSandbox, removeSandbox } from '../../sandbox/inventory.js';
import { formatFlagHelp, parseArgs } from '../args.js';
import type { Command } from '../command.js';

const FLAGS = {
  force: { type: 'boolean', short: 'f', description: 'Kill and remove running or broken containers' },
} as const;

export const rmCommand: Command = {
  name: 'rm',
  summary: 'Remove containers (their VM, processes, mounts and state)',
  usage: `vrun rm [OPTIONS] CONTAINER [CONTAINER...]\n\n${formatFlagHelp(FLAGS)}`,
  async run(argv) {
    const { flags, positionals } = parseArgs(argv, FLAGS, { command: 'rm', stopAtPositional: false });
    if (positionals.length === 0) throw new VrunError('"vrun rm" requires at least one container');
    let code = 0;
    for (const ref of positionals) {
      try {
        const s = await findSandbox(ref);
        if ((s.status === 'running' || s.status === 'creating') && !flags.force) {
          throw new VrunError(`cannot remove running container ${s.name}: stop it first, or use rm -f`, { kind: 'precondition' });
        }
        await removeSandbox(s);
        process.stdout.write(`${ref}\n`);
      } catch (err) {
        process.stderr.write(`vrun: ${terminalSafeError(err)}\n`);
        code = 1;
      }
    }
    return code;
  },
};
