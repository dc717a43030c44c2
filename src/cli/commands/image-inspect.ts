import type { Command } from '../command.js';
import { parseArgs } from '../args.js';
import { VrunError } from '../../common/errors.js';
import { displayName, openImageStore } from '../../image/image-store.js';

export const imageInspectCommand: Command = {
  name: 'image inspect',
  summary: 'Show an image as JSON (id, names, config, layers)',
  usage: 'vrun image inspect IMAGE...',
  async run(argv) {
    const { positionals } = parseArgs(argv, {}, { command: 'image inspect', stopAtPositional: false });
    if (positionals.length === 0) throw new VrunError('"vrun image inspect" needs at least one image');
    const store = openImageStore();
    const out = positionals.map((p) => {
      const img = store.resolve(p);
      return {
        Id: img.id,
        RepoTags: img.record.names.map(displayName),
        RepoDigests: img.record.repoDigests,
        ManifestDigest: img.manifestDigest,
        Created: img.config.created,
        Architecture: img.config.architecture,
        Os: img.config.os,
        Size: img.record.size,
        Config: img.runtime,
        RootFS: { Type: 'layers', Layers: img.config.rootfs.diff_ids },
        LayerDirs: img.layerDirs,
      };
    });
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return 0;
  },
};
