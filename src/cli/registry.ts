import type { Command } from './command.js';
import { execCommand } from './commands/exec.js';
import { inspectCommand } from './commands/inspect.js';
import { killCommand } from './commands/kill.js';
import { logsCommand } from './commands/logs.js';
import { psCommand } from './commands/ps.js';
import { rmCommand } from './commands/rm.js';
import { runCommand } from './commands/run.js';
import { statsCommand } from './commands/stats.js';
import { stopCommand } from './commands/stop.js';
import { versionCommand } from './commands/version.js';
import { pullCommand } from './commands/pull.js';
import { importCommand } from './commands/import.js';
import { imagesCommand } from './commands/images.js';
import { imageInspectCommand } from './commands/image-inspect.js';
import { imageRmCommand } from './commands/image-rm.js';
import { imagePruneCommand } from './commands/image-prune.js';
import { imageEnsureBuiltinCommand } from './commands/image-ensure-builtin.js';

/** Every command the `vrun` binary knows. Add new ones here. */
export const commands: Command[] = [
  runCommand,
  execCommand,
  psCommand,
  logsCommand,
  stopCommand,
  killCommand,
  rmCommand,
  inspectCommand,
  statsCommand,
  versionCommand,
  pullCommand,
  importCommand,
  imagesCommand,
  imageInspectCommand,
  imageRmCommand,
  imagePruneCommand,
  imageEnsureBuiltinCommand,
];
