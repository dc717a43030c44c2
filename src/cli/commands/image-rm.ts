import type { Command } from '../command.js';
import { parseArgs } from '../args.js';
import { VrunError } from '../../common/errors.js';
import { terminalSafeError } from '../../common/terminal-text.js';
import { openImageStore } from '../../image/image-store.js';

export const imageRmCommand: Command = {
  name: 'rmi',
  aliases: ['image rm', 'image remove'],
  summary: 'Remove images',
  usage: 'vrun rmi [-f] IMAGE...',
  async run(argv) {
    const { flags: f, positionals } = parseArgs(argv, { force: { type: 'boolean', short: 'f', description: 'Remove even if a container uses it' } }, { command: 'rmi', stopAtPositional: false });
    if (positionals.length === 0) throw new VrunError('"vrun rmi" needs at least one image');
    const store = openImageStore();
    let failed = 0;
    for (const p of positionals) {
      try {
        for (const line of await store.remove(p, { force: f.force })) process.stdout.write(`${line}\n`);
      } catch (err) {
        if (positionals.length === 1) throw err;
        failed++;
        process.stderr.write(`vrun: ${terminalSafeError(err)}\n`);
      }
    }
    return failed > 0 ? 1 : 0;
  },
};
