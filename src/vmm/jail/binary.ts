import { existsSync } from 'node:fs';
import path from 'node:path';
import { VrunError } from '../../common/errors.js';
import { projectRoot } from '../../common/paths.js';

/** native/jailer/vrun-jailer.cc, built next to the addon by `npm ci` (node-gyp); VRUN_JAILER overrides. */
export function jailerPath(): string {
  return process.env.VRUN_JAILER ?? path.join(projectRoot(), 'native', 'build', 'Release', 'vrun-jailer');
}

export function jailerBinary(): string {
  const file = jailerPath();
  if (!existsSync(file)) {
    throw new VrunError(`the VMM jailer is not built: ${file} is missing (run "npm ci" or "npx node-gyp rebuild --directory native")`);
  }
  return file;
}
