import { VrunError } from '../../common/errors.js';
import { controlStream } from '../../sandbox/control-client.js';
import { findSandbox } from '../../sandbox/inventory.js';
import { sandboxPaths } from '../../sandbox/state.js';
import { parseUserSpec } from '../../common/user-db.js';
import { formatFlagHelp, parseArgs } from '../args.js';
import type { Command } from '../command.js';
import { flushStdio, initialSize, localOutput, wireLocalIo } from '../attach-io.js';
import { parseEnvEntry } from '../run-options.js';

const FLAGS = {
  interactive: { type: 'boolean', short: 'i', description: 'Keep stdin open' },
  tty: { type: 'boolean', short: 't', description: 'Allocate a terminal' },
  env: { type: 'list', short: 'e', value: 'K=V', description: 'Set an environment variable' },
  workdir: { type: 'string', short: 'w', value: 'DIR', description: 'Working directory' },
  user: { type: 'string', short: 'u', value: 'USER[:GROUP]', description: 'User to run as' },
  detach: { type: 'boolean', short: 'd', description: 'Not supported (accepted for compatibility: refused)' },
} as const;

export const execCommand: Command = {
  name: 'exec',
  summary: 'Run a command in a running container',
  usage: `vrun exec [OPTIONS] CONTAINER COMMAND [ARG...]\n\n${formatFlagHelp(FLAGS)}`,
  async run(argv) {
    const { flags, positionals } = parseArgs(argv, FLAGS, { command: 'exec' });
    const [ref, ...args] = positionals;
    if (!ref || args.length === 0) throw new VrunError('"vrun exec" requires a container and a command');
    if (flags.detach) throw new VrunError('vrun exec -d is not supported');
    if (flags.user !== undefined) parseUserSpec(flags.user);
    const env = flags.env.map((e) => parseEnvEntry(e, '--env')).filter((e): e is string => e !== undefined);
    const s = await findSandbox(ref);
    if (s.status !== 'running') throw new VrunError(`container ${s.name} is not running`, { kind: 'precondition' });
    const session = await controlStream(
      sandboxPaths(s.id).control,
      {
        op: 'exec',
        args,
        env,
        workdir: flags.workdir,
        user: flags.user,
        tty: flags.tty,
        stdin: flags.interactive,
        ...initialSize(flags.tty),
      },
      localOutput(),
    );
    const restore = wireLocalIo(session, { stdin: flags.interactive, tty: flags.tty });
    try {
      return (await session.result).exitCode;
    } finally {
      restore();
      await flushStdio();
    }
  },
};
