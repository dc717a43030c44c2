import { execFile } from 'node:child_process';
import { mkdir, rmdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import { VrunError } from '../common/errors.js';

const run = promisify(execFile);

/**
 * A read-only bind mount of a host directory, for `-v HOST:CTR:ro`. Debian's virtiofsd has no read-only
 * mode, so without this a guest kernel that ignored its own read-only mount could still write through
 * virtiofsd; serving the read-only bind mount makes the host refuse those writes (EROFS) too.
 */
export async function bindReadOnly(source: string, target: string): Promise<() => Promise<void>> {
  await mkdir(target, { recursive: true, mode: 0o700 });
  try {
    await run('mount', ['--bind', source, target]);
  } catch (err) {
    throw new VrunError(`cannot bind-mount volume ${source}: ${((err as { stderr?: string }).stderr ?? String(err)).trim()}`);
  }
  try {
    await run('mount', ['-o', 'remount,bind,ro', target]);
  } catch (err) {
    await run('umount', ['-l', target]).catch(() => undefined);
    throw new VrunError(`cannot make the bind mount of volume ${source} read-only: ${((err as { stderr?: string }).stderr ?? String(err)).trim()}`);
  }
  return async () => {
    await run('umount', [target]).catch(() => run('umount', ['-l', target]));
    await rmdir(target).catch(() => undefined);
  };
}
