import { errorMessage } from '../common/errors.js';
import { parseShimFlags } from './flags.js';

/**
 * Entry point of containerd-shim-vrun-v2: `start` and `delete` are containerd's short-lived invocations;
 * `serve <dir>` is the long-lived per-pod process `start` spawns. Each action loads only its own modules:
 * containerd gives `delete` a few seconds after a shim died, and loading gRPC for it would eat them.
 */
export async function main(argv: string[]): Promise<number> {
  let flags;
  try {
    flags = parseShimFlags(argv);
  } catch (err) {
    process.stderr.write(`${errorMessage(err)}\n`);
    return 2;
  }
  switch (flags.action) {
    case 'version':
      process.stdout.write('containerd-shim-vrun-v2 (vrun)\n  shim API version 2\n');
      return 0;
    case 'start':
      process.stdout.write(await (await import('./start.js')).startShim(flags));
      return 0;
    case 'delete': {
      const out = await (await import('./delete.js')).deleteAfterShim(flags);
      await new Promise<void>((resolve, reject) => process.stdout.write(out, (err) => (err ? reject(err) : resolve())));
      return 0;
    }
    case 'serve': {
      const dir = flags.rest[0];
      if (!dir) throw new Error('serve needs the pod directory');
      await (await import('./serve.js')).serve(flags, dir, flags.id);
      process.exit(0);
    }
    // falls through: process.exit does not return
    default:
      process.stderr.write(`containerd-shim-vrun-v2: unknown action "${flags.action}" (expected start or delete)\n`);
      return 2;
  }
}
