import { VrunError, errorMessage } from '../../common/errors.js';
import { controlCall } from '../../sandbox/control-client.js';
import { findSandbox } from '../../sandbox/inventory.js';
import { sandboxPaths } from '../../sandbox/state.js';
import { formatFlagHelp, parseArgs } from '../args.js';
import type { Command } from '../command.js';
import { parsePositiveNumber } from '../units.js';

const FLAGS = {
  time: { type: 'string', short: 't', value: 'SECONDS', description: 'Seconds to wait before killing (default 10)' },
} as const;

export const stopCommand: Command = {
  name: 'stop',
  summary: 'Stop running containers (SIGTERM, then SIGKILL)',
  usage: `vrun stop [OPTIONS] CONTAINER [CONTAINER...]\n\n${formatFlagHelp(FLAGS)}`,
  async run(argv) {
    const { flags, positionals } = parseArgs(argv, FLAGS, { command: 'stop', stopAtPositional: false });
    if (positionals.length === 0) throw new VrunError('"vrun stop" requires at least one container');
    const timeoutS = flags.time === undefined ? 10 : flags.time === '0' ? 0 : parsePositiveNumber(flags.time, '--time', { max: 3600 });
    let code = 0;
    for (const ref of positionals) {
      try {
        const s = await findSandbox(ref);
        if (s.status === 'running' || s.status === 'creating') await controlCall(sandboxPaths(s.id).control, { op: 'stop', timeoutS });
        process.stdout.write(`${ref}\n`);
      } catch (err) {
        process.stderr.write(`vrun: ${errorMessage(err)}\n`);
        code = 1;
      }
    }
    return code;
  },
};
