import type { Command } from '../command.js';
import { parseArgs } from '../args.js';
import { VrunError } from '../../common/errors.js';
import { openImageStore } from '../../image/image-store.js';
import { BUILTIN_BUSYBOX, ensureBuiltinImages } from '../../image/builtin.js';
import { digestHex } from '../../image/digest.js';

export const imageEnsureBuiltinCommand: Command = {
  name: 'image ensure-builtin',
  summary: 'Create the built-in busybox image from the host busybox-static (works offline)',
  usage: 'vrun image ensure-builtin',
  async run(argv) {
    const { positionals } = parseArgs(argv, {}, { command: 'image ensure-builtin' });
    if (positionals.length > 0) throw new VrunError('"vrun image ensure-builtin" takes no arguments');
    const res = await ensureBuiltinImages(openImageStore());
    process.stdout.write(`${BUILTIN_BUSYBOX} ${digestHex(res.record.config).slice(0, 12)} ${res.created ? 'created' : 'up to date'}\n`);
    return 0;
  },
};
