import type { Command } from '../command.js';
import { parseArgs } from '../args.js';
import { VrunError } from '../../common/errors.js';
import { displayName, openImageStore } from '../../image/image-store.js';
import { digestHex } from '../../image/digest.js';
import { printTable } from '../table.js';

function size(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}kB`;
  return `${n}B`;
}

export const imagesCommand: Command = {
  name: 'images',
  aliases: ['image ls', 'image list'],
  summary: 'List images in the local store',
  usage: 'vrun images [-q] [--digests]',
  async run(argv) {
    const { flags: f, positionals } = parseArgs(argv, { quiet: { type: 'boolean', short: 'q', description: 'Only image ids' }, digests: { type: 'boolean', description: 'Show digests' } }, { command: 'images' });
    if (positionals.length > 0) throw new VrunError('"vrun images" takes no arguments');
    const images = openImageStore().list();
    if (f.quiet) {
      for (const r of images) process.stdout.write(`${digestHex(r.config).slice(0, 12)}\n`);
      return 0;
    }
    const rows: string[][] = [['REPOSITORY', 'TAG', ...(f.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE']];
    for (const r of images) {
      const names = r.names.length > 0 ? r.names.map(displayName) : ['<none>:<none>'];
      for (const n of names) {
        const colon = n.lastIndexOf(':');
        rows.push([n.slice(0, colon), n.slice(colon + 1), ...(f.digests ? [r.manifest] : []), digestHex(r.config).slice(0, 12), r.added.slice(0, 19).replace('T', ' '), size(r.size)]);
      }
    }
    printTable(rows);
    return 0;
  },
};
