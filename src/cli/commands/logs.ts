import { VrunError } from '../../common/errors.js';
import { replayContainerLog } from '../../sandbox/container-log.js';
import { findSandbox, reconcile } from '../../sandbox/inventory.js';
import { readState, sandboxPaths } from '../../sandbox/state.js';
import { formatFlagHelp, parseArgs } from '../args.js';
import type { Command } from '../command.js';
import { flushStdio, localOutput } from '../attach-io.js';

const FLAGS = {
  follow: { type: 'boolean', short: 'f', description: 'Follow log output until the container stops' },
} as const;

/**
 * The container's output, raw (it is what the user asked for), from container.log: its rotated `.1` first, then
 * the current file. The sandbox keeps at most 2 x 16 MiB of it (container-log.ts); older output is gone.
 */
export const logsCommand: Command = {
  name: 'logs',
  summary: 'Print the output of a container',
  usage: `vrun logs [OPTIONS] CONTAINER\n\n${formatFlagHelp(FLAGS)}`,
  async run(argv) {
    const { flags, positionals } = parseArgs(argv, FLAGS, { command: 'logs', stopAtPositional: false });
    if (positionals.length !== 1) throw new VrunError('"vrun logs" requires exactly one container');
    const s = await findSandbox(positionals[0] as string);
    await replayContainerLog(
      sandboxPaths(s.id).containerLog,
      localOutput(),
      {
        follow: flags.follow,
        stillRunning: async () => {
          const now = await readState(s.id).catch(() => undefined);
          if (!now) return false;
          const r = await reconcile(now);
          return r?.status === 'running' || r?.status === 'creating';
        },
      },
    );
    await flushStdio();
    return 0;
  },
};
