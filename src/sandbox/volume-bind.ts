import { execFile } from 'node:child_process';
import { mkdir, rmdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import { VrunError } from '../common/errors.js';
import { GUEST_DATA_FLAGS } from './guest-share.js';

const run = promisify(execFile);

/**
 * A volume (`-v HOST:CTR[:ro]`) is served from a bind mount of the host directory, never from the directory
 * itself: the mount carries nosuid,nodev,noexec, so what the guest writes there is not usable through it on
 * the host, and `ro` makes the host refuse writes (EROFS) even from a guest kernel that ignored its own
 * read-only mount (Debian's virtiofsd has no read-only mode). The host directory's own path stays what it
 * was: a guest that is root may still leave a setuid-root file there, as a Docker container may in a bind
 * mount (docs/security.md).
 */
export async function bindVolume(source: string, target: string, readonly: boolean): Promise<() => Promise<void>> {
  await mkdir(target, { recursive: true, mode: 0o700 });
  try {
    await run('mount', ['--bind', source, target]);
  } catch (err) {
    throw new VrunError(`cannot bind-mount volume ${source}: ${((err as { stderr?: string }).stderr ?? String(err)).trim()}`);
  }
  try {
    await run('mount', ['-o', `remount,bind,${readonly ? 'ro' : 'rw'},${GUEST_DATA_FLAGS.join(',')}`, target]);
  } catch (err) {
    await run('umount', ['-l', target]).catch(() => undefined);
    throw new VrunError(`cannot set the flags of the bind mount of volume ${source}: ${((err as { stderr?: string }).stderr ?? String(err)).trim()}`);
  }
  return async () => {
    await run('umount', [target]).catch(() => run('umount', ['-l', target]));
    await rmdir(target).catch(() => undefined);
  };
}
