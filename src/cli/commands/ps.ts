import { VrunError } from '../../common/errors.js';
import { terminalSafe } from '../../common/terminal-text.js';
import { listSandboxes } from '../../sandbox/inventory.js';
import type { SandboxState } from '../../sandbox/state.js';
import { formatFlagHelp, parseArgs } from '../args.js';
import type { Command } from '../command.js';
import { printTable } from '../table.js';

const FLAGS = {
  all: { type: 'boolean', short: 'a', description: 'Show all containers (default shows just running)' },
  quiet: { type: 'boolean', short: 'q', description: 'Only display container ids' },
} as const;

function ago(iso: string | undefined): string {
  if (!iso) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} seconds`;
  if (s < 3600) return `${Math.round(s / 60)} minutes`;
  return `${Math.round(s / 3600)} hours`;
}

/** Docker's STATUS column, plus the reason for a failed sandbox (guest text: one safe, short line). */
export function statusText(s: SandboxState): string {
  switch (s.status) {
    case 'creating':
      return 'Created';
    case 'running':
      return `Up ${ago(s.startedAt)}`;
    case 'exited':
      return `Exited (${s.exitCode ?? '?'})${s.oomKilled ? ' OOM-killed' : ''} ${ago(s.finishedAt)} ago`;
    case 'failed':
      return `Failed: ${terminalSafe(s.error ?? 'unknown reason', { singleLine: true, maxLength: 200 })}`;
  }
}

/** Docker's PORTS column: `0.0.0.0:18080->80/tcp`, only while the mappings are in place. */
export function portsText(s: SandboxState): string {
  if (s.status !== 'running' && s.status !== 'creating') return '';
  return (s.config.network?.ports ?? [])
    .map((p) => `${p.hostIP.includes(':') ? `[${p.hostIP}]` : p.hostIP || '0.0.0.0'}:${p.hostPort}->${p.containerPort}/${p.protocol}`)
    .join(', ');
}

export const psCommand: Command = {
  name: 'ps',
  summary: 'List containers',
  usage: `vrun ps [OPTIONS]\n\n${formatFlagHelp(FLAGS)}`,
  async run(argv) {
    const { flags, positionals } = parseArgs(argv, FLAGS, { command: 'ps', stopAtPositional: false });
    if (positionals.length > 0) throw new VrunError('"vrun ps" accepts no arguments');
    const rows = (await listSandboxes()).filter((s) => flags.all || s.status === 'running' || s.status === 'creating');
    if (flags.quiet) {
      for (const s of rows) process.stdout.write(`${s.id.slice(0, 12)}\n`);
      return 0;
    }
    const table = [['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES']];
    for (const s of rows) {
      const cmd = [...(s.config.entrypoint ? [s.config.entrypoint] : []), ...s.config.args].join(' ');
      table.push([s.id.slice(0, 12), s.image, JSON.stringify(cmd.length > 20 ? `${cmd.slice(0, 19)}…` : cmd), `${ago(s.createdAt)} ago`, statusText(s), portsText(s), s.name]);
    }
    printTable(table);
    return 0;
  },
};
