import path from 'node:path';

/**
 * Where vrun keeps things. Persistent data (images, the guest-image cache) lives under VRUN_ROOT;
 * per-sandbox runtime state, which must not survive a host reboot, under VRUN_RUN.
 */
export function vrunRoot(): string {
  return process.env.VRUN_ROOT ?? process.env.VRUN_HOME ?? '/var/lib/vrun';
}

export function vrunRunDir(): string {
  return process.env.VRUN_RUN ?? '/run/vrun';
}

export function guestImageCacheDir(): string {
  return path.join(vrunRoot(), 'guest-image');
}

/** The repository root, found from this file's compiled or source location. */
export function projectRoot(): string {
  const here = path.dirname(new URL(import.meta.url).pathname);
  // src/common -> root, or dist/src/common -> root
  const up = here.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..';
  return path.resolve(here, up);
}
