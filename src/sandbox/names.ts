import { readlink, symlink, unlink } from 'node:fs/promises';
import path from 'node:path';
import { VrunError } from '../common/errors.js';
import { checkId } from '../common/ids.js';
import { vrunRunDir } from '../common/paths.js';
import { ID_RE, namesDir, shortId } from './state.js';

/**
 * Container names are symlinks names/<name> -> <id>: creating a symlink is atomic and fails if the name
 * exists, so two `vrun run --name x` at once cannot both win.
 */
export function validateName(name: string): void {
  checkId('container name', name);
}

export async function reserveName(name: string, id: string, runDir = vrunRunDir()): Promise<void> {
  validateName(name);
  const link = path.join(namesDir(runDir), name);
  try {
    await symlink(id, link);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const owner = await nameOwner(name, runDir);
    throw new VrunError(`the container name "${name}" is already in use by container ${owner ? shortId(owner) : '(unknown)'}: remove it or pick another name`, { kind: 'exists' });
  }
}

export async function nameOwner(name: string, runDir = vrunRunDir()): Promise<string | undefined> {
  try {
    const target = await readlink(path.join(namesDir(runDir), name));
    return ID_RE.test(target) ? target : undefined;
  } catch {
    return undefined;
  }
}

export async function releaseName(name: string, id: string, runDir = vrunRunDir()): Promise<void> {
  if ((await nameOwner(name, runDir)) !== id) return;
  await unlink(path.join(namesDir(runDir), name)).catch(() => undefined);
}

/** A name made of the id, Docker-like enough to be typed. */
export function defaultName(id: string): string {
  return `vrun_${shortId(id)}`;
}
