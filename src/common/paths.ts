import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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

let root: string | undefined;

/**
 * The repository root: the nearest directory above this code holding vrun's package.json. Found by
 * walking up rather than by a fixed depth, because this code runs from src/ (tests), from dist/src/
 * (tsc's output) and from the CLI bundle in dist/cli/.
 */
export function projectRoot(): string {
  root ??= findProjectRoot();
  return root;
}

function findProjectRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = here; ; dir = path.dirname(dir)) {
    if (isVrunPackage(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) break;
  }
  // Not inside the repository (the guest's bundled agent): the layout guess, as before.
  const up = here.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..';
  return path.resolve(here, up);
}

function isVrunPackage(file: string): boolean {
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown }).name === 'vrun';
  } catch {
    return false;
  }
}
