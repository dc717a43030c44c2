import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from '../command.js';
import { projectRoot } from '../../common/paths.js';

export const versionCommand: Command = {
  name: 'version',
  summary: 'Show the vrun version',
  usage: 'vrun version',
  async run() {
    const pkg = JSON.parse(readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as { version: string };
    process.stdout.write(`vrun ${pkg.version}\n`);
    return 0;
  },
};
