import { VrunError } from '../../common/errors.js';
import { terminalSafeJson } from '../../common/terminal-text.js';
import type { ContainerStats } from '../../agent/host/reply-checks.js';
import { controlCall } from '../../sandbox/control-client.js';
import { findSandbox } from '../../sandbox/inventory.js';
import { sandboxPaths } from '../../sandbox/state.js';
import { formatFlagHelp, parseArgs } from '../args.js';
import type { Command } from '../command.js';

const FLAGS = {
  'no-stream': { type: 'boolean', description: 'One sample only (always; accepted for compatibility)' },
  format: { type: 'string', value: 'json', description: 'Print the raw numbers as JSON' },
} as const;

function mib(n: number): string {
  return `${(n / 2 ** 20).toFixed(1)}MiB`;
}

export const statsCommand: Command = {
  name: 'stats',
  summary: 'Show resource usage of running containers (from the guest\'s cgroups)',
  usage: `vrun stats [OPTIONS] CONTAINER [CONTAINER...]\n\n${formatFlagHelp(FLAGS)}`,
  async run(argv) {
    const { flags, positionals } = parseArgs(argv, FLAGS, { command: 'stats', stopAtPositional: false });
    if (positionals.length === 0) throw new VrunError('"vrun stats" requires at least one container');
    if (flags.format !== undefined && flags.format !== 'json') throw new VrunError(`invalid --format "${flags.format}": only json is supported`);
    const rows: [string, ContainerStats][] = [];
    for (const ref of positionals) {
      const s = await findSandbox(ref);
      if (s.status !== 'running') throw new VrunError(`container ${s.name} is not running`, { kind: 'precondition' });
      rows.push([s.name, (await controlCall(sandboxPaths(s.id).control, { op: 'stats' }, { replyTimeoutMs: 30_000 })) as ContainerStats]);
    }
    if (flags.format === 'json') {
      process.stdout.write(`${terminalSafeJson(Object.fromEntries(rows), 2)}\n`);
      return 0;
    }
    process.stdout.write(`${'NAME'.padEnd(24)}${'CPU TIME'.padEnd(12)}${'MEM USAGE / LIMIT'.padEnd(26)}PIDS\n`);
    // The numbers come from the guest: printed as numbers only, whatever it sent.
    for (const [name, st] of rows) {
      const mem = st.memory;
      const cpu = st.cpu;
      const limit = Number(mem?.limitBytes ?? 0);
      const lim = limit > 0 ? mib(limit) : 'unlimited';
      process.stdout.write(`${name.padEnd(24)}${`${(Number(cpu?.usageUsec ?? 0) / 1e6).toFixed(2)}s`.padEnd(12)}${`${mib(Number(mem?.currentBytes ?? 0))} / ${lim}`.padEnd(26)}${Number(st.pids?.current ?? 0)}\n`);
    }
    return 0;
  },
};
