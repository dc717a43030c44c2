import type { Command } from './command.js';
import { versionCommand } from './commands/version.js';

/** Every command the `vrun` binary knows. Add new ones here. */
export const commands: Command[] = [versionCommand];
