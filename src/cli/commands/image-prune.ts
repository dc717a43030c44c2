import type { Command } from '../command.js';
import { parseArgs } from '../args.js';
import { VrunError } from '../../common/errors.js';
import { openImageStore } from '../../image/image-store.js';

export const imagePruneCommand: Command = {
  name: 'image prune',
  summary: 'Remove untagged images (all unused ones with -a) and unreferenced data',
  usage: 'vrun image prune [-a]',
  async run(argv) {
    const { flags: f, positionals } = parseArgs(argv, { all: { type: 'boolean', short: 'a', description: 'Remove every image no container uses' }, force: { type: 'boolean', short: 'f', description: 'Accepted for Docker compatibility' } }, { command: 'image prune' });
    if (positionals.length > 0) throw new VrunError('"vrun image prune" takes no arguments');
    const res = await openImageStore().prune({ all: f.all });
    for (const id of res.images) process.stdout.write(`Deleted: ${id}\n`);
    const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
    process.stdout.write(`Removed ${plural(res.blobs, 'blob')} and ${plural(res.layers, 'unpacked layer')}; reclaimed ${(res.bytes / 1e6).toFixed(1)}MB of blobs\n`);
    return 0;
  },
};
