import type { Command } from '../command.js';
import { parseArgs } from '../args.js';
import { VrunError } from '../../common/errors.js';
import { terminalSafeJson } from '../../common/terminal-text.js';
import { displayName, openImageStore } from '../../image/image-store.js';

export const imageInspectCommand: Command = {
  name: 'image inspect',
  summary: 'Show an image as JSON (id, names, config, layers)',
  usage: 'vrun image inspect IMAGE...',
  async run(argv) {
    const { positionals } = parseArgs(argv, {}, { command: 'image inspect', stopAtPositional: false });
    if (positionals.length === 0) throw new VrunError('"vrun image inspect" needs at least one image');
    const out = positionals.map((p) => imageDetails(p));
    // An image's config is someone else's text too: DEL, C1 and bidi controls \u-escaped (same JSON value).
    process.stdout.write(`${terminalSafeJson(out, 2)}\n`);
    return 0;
  },
};

/** An image as `vrun image inspect` shows it (also `vrun inspect` for a name that is no container). */
export function imageDetails(ref: string) {
  const img = openImageStore().resolve(ref);
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
}
