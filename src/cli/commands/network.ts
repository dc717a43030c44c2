import { VrunError } from '../../common/errors.js';
import { terminalSafe } from '../../common/terminal-text.js';
import { defaultCniEnv } from '../../network/cni.js';
import { DEFAULT_NETWORK, listNetworks, type NetworkConfigList } from '../../network/cni-config.js';
import { parseArgs } from '../args.js';
import type { Command } from '../command.js';
import { printTable } from '../table.js';

const FLAGS = {
  quiet: { type: 'boolean', short: 'q', description: 'Only display network names' },
} as const;

/** The subnets host-local hands out, for the SUBNET column. */
function subnets(list: NetworkConfigList): string {
  const out: string[] = [];
  for (const p of list.plugins) {
    const ipam = p.ipam as { subnet?: unknown; ranges?: unknown } | undefined;
    if (typeof ipam?.subnet === 'string') out.push(ipam.subnet);
    if (Array.isArray(ipam?.ranges)) {
      for (const set of ipam.ranges as unknown[]) {
        for (const r of Array.isArray(set) ? (set as { subnet?: unknown }[]) : []) if (typeof r?.subnet === 'string') out.push(r.subnet);
      }
    }
  }
  return out.join(',');
}

/** `vrun network ls`: what `--network` accepts, read from vrun's CNI config directory. */
export const networkLsCommand: Command = {
  name: 'network ls',
  aliases: ['network list'],
  summary: 'List the networks --network accepts',
  usage: 'vrun network ls [-q]\n\n"bridge" is the "vrun" network (written on first use); "none" gives loopback only.',
  async run(argv) {
    const { flags, positionals } = parseArgs(argv, FLAGS, { command: 'network ls', stopAtPositional: false });
    if (positionals.length > 0) throw new VrunError('"vrun network ls" accepts no arguments');
    const env = defaultCniEnv();
    const { networks, broken } = listNetworks(env.confDir);
    if (flags.quiet) {
      for (const n of networks) process.stdout.write(`${terminalSafe(n.list.name, { singleLine: true, maxLength: 128 })}\n`);
      process.stdout.write('none\n');
      return 0;
    }
    const rows = [['NAME', 'DRIVER', 'SUBNET', 'PLUGINS', 'SOURCE']];
    for (const { list, file } of networks) {
      const name = list.name === DEFAULT_NETWORK ? `${list.name} (bridge)` : list.name;
      rows.push([name, list.plugins[0]?.type ?? '', subnets(list), list.plugins.map((p) => p.type).join(','), file ?? `${env.confDir} (written on first use)`]);
    }
    rows.push(['none', 'null', '', '', 'built in']);
    printTable(rows);
    for (const b of broken) process.stderr.write(`vrun: warning: ${terminalSafe(b, { singleLine: true, maxLength: 300 })}\n`);
    return 0;
  },
};
