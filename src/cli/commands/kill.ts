import { VrunError } from '../../common/errors.js';
import { terminalSafeError } from '../../common/terminal-text.js';
import { controlCall } from '../../sandbox/control-client.js';
import { findSandbox } from '../../sandbox/inventory.js';
import { sandboxPaths } from '../../sandbox/state.js';
import { formatFlagHelp, parseArgs } from '../args.js';
import type { Command } from '../command.js';

const FLAGS = {
  signal: { type: 'string', short: 's', value: 'SIGNAL', description: 'Signal to send (default KILL)' },
} as const;

export function normalizeSignal(s: string): string {
  const up = s.toUpperCase();
  if (/^\d{1,2}$/.test(up) && Number(up) >= 1 && Number(up) <= 64) return up;
  const name = up.startsWith('SIG') ? up : `SIG${up}`;
  if (!/^SIG[A-Z0-9+-]{2,10}$/.test(name)) throw new VrunError(`invalid signal "${s.slice(0, 20)}"`);
  return name;
}

export const killCommand: Command = {
  name: 'kill',
  summary: 'Send a signal to running containers',
  usage: `vrun kill [OPTIONS] CONTAINER [CONTAINER...]\n\n${formatFlagHelp(FLAGS)}`,
  async run(argv) {
    const { flags, positionals } = parseArgs(argv, FLAGS, { command: 'kill', stopAtPositional: false });
    if (positionals.length === 0) throw new VrunError('"vrun kill" requires at least one container');
    const signal = normalizeSignal(flags.signal ?? 'KILL');
    let code = 0;
    for (const ref of positionals) {
      try {
        const s = await findSandbox(ref);
        if (s.status !== 'running') throw new VrunError(`container ${s.name} is not running`, { kind: 'precondition' });
        // A guest that never answers must not hold the CLI forever (`vrun stop` or `rm -f` end such a sandbox).
        await controlCall(sandboxPaths(s.id).control, { op: 'kill', signal }, { replyTimeoutMs: 30_000 });
        process.stdout.write(`${ref}\n`);
      } catch (err) {
        process.stderr.write(`vrun: ${terminalSafeError(err)}\n`);
        code = 1;
      }
    }
    return code;
  },
};
