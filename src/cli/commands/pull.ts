import type { Command } from '../command.js';
import { parseArgs } from '../args.js';
import { VrunError } from '../../common/errors.js';
import { createProgress } from '../../common/progress.js';
import { openImageStore } from '../../image/image-store.js';
import { pullImage } from '../../image/pull.js';
import { parsePositiveNumber } from '../units.js';

const flags = {
  insecure: { type: 'boolean', description: 'Allow plain HTTP to this registry' },
  quiet: { type: 'boolean', short: 'q', description: 'Print only the image id' },
  parallel: { type: 'string', value: 'N', description: 'Parallel layer downloads (default 3)' },
} as const;

export const pullCommand: Command = {
  name: 'pull',
  aliases: ['image pull'],
  summary: 'Pull an image from a registry',
  usage: 'vrun pull [--insecure] [-q] [--parallel N] IMAGE',
  async run(argv) {
    const { flags: f, positionals } = parseArgs(argv, flags, { command: 'pull' });
    if (positionals.length !== 1) throw new VrunError('"vrun pull" needs exactly one image reference');
    const opts: Parameters<typeof pullImage>[2] = { insecure: f.insecure, progress: createProgress({ quiet: f.quiet }) };
    if (f.parallel !== undefined) opts.parallel = parsePositiveNumber(f.parallel, '--parallel', { integer: true, max: 16 });
    const rec = await pullImage(openImageStore(), positionals[0] as string, opts);
    process.stdout.write(`${f.quiet ? rec.config : `Pulled ${positionals[0]} ${rec.config}`}\n`);
    return 0;
  },
};
