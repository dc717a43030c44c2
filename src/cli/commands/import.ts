import type { Command } from '../command.js';
import { parseArgs } from '../args.js';
import { VrunError } from '../../common/errors.js';
import { displayName, openImageStore } from '../../image/image-store.js';
import { importImage } from '../../image/import.js';

export const importCommand: Command = {
  name: 'import',
  aliases: ['image import', 'load', 'image load'],
  summary: 'Import an image from a docker-archive tar, an OCI archive, or an OCI layout directory',
  usage: 'vrun import [-q] ARCHIVE|DIR [NAME[:TAG]]',
  async run(argv) {
    const { flags: f, positionals } = parseArgs(argv, { quiet: { type: 'boolean', short: 'q', description: 'Print only image ids' }, input: { type: 'string', short: 'i', value: 'FILE', description: 'Archive to import (like docker load -i)' } }, { command: 'import', stopAtPositional: false });
    const source = f.input ?? positionals.shift();
    if (source === undefined || positionals.length > 1) throw new VrunError('usage: vrun import ARCHIVE|DIR [NAME[:TAG]]');
    const opts: Parameters<typeof importImage>[2] = {};
    if (positionals[0] !== undefined) opts.name = positionals[0];
    if (!f.quiet) opts.onStep = (m) => process.stderr.write(`${m}\n`);
    const recs = await importImage(openImageStore(), source, opts);
    for (const r of recs) process.stdout.write(f.quiet ? `${r.config}\n` : `Loaded image: ${r.names.map(displayName).join(', ') || r.config}\n`);
    return 0;
  },
};
