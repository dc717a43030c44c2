import { VrunError } from '../common/errors.js';
import { logForPeople } from '../common/log-audience.js';
import { terminalSafe, terminalSafeError } from '../common/terminal-text.js';
import { EXIT_RUNTIME_FAILED, exitCodeFor } from './exit-codes.js';
import { commands } from './registry.js';

/** Longest error message printed (a guest's console tail quoted in one fits). */
const ERROR_MAX = 8192;

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return `Usage: vrun [--debug] COMMAND [ARGS...]\n\nVM-isolated containers: every container runs in its own lightweight VM.\n\nCommands:\n${lines.join('\n')}\n`;
}

/** Finds the command for argv, longest match first so "image prune" beats "image". */
function findCommand(argv: string[]): { cmd: (typeof commands)[number]; rest: string[] } | undefined {
  for (const words of [2, 1]) {
    const key = argv.slice(0, words).join(' ');
    const cmd = commands.find((c) => c.name === key || c.aliases?.includes(key));
    if (cmd) return { cmd, rest: argv.slice(words) };
  }
  return undefined;
}

export async function main(argvIn: string[]): Promise<number> {
  const argv = [...argvIn];
  // A person reads this process's stderr: warnings are plain lines there, JSON only with --debug.
  logForPeople('vrun');
  while (argv[0] === '--debug' || argv[0] === '-D') {
    argv.shift();
    process.env.VRUN_DEBUG = '1';
  }
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(usage());
    return argv.length === 0 ? EXIT_RUNTIME_FAILED : 0;
  }
  if (argv[0] === '--version') argv[0] = 'version';
  const found = findCommand(argv);
  if (!found) {
    process.stderr.write(`vrun: unknown command "${terminalSafe(argv[0] ?? '', { singleLine: true, maxLength: 200 })}"\nSee 'vrun --help'.\n`);
    return EXIT_RUNTIME_FAILED;
  }
  try {
    const cmd = await found.cmd.load();
    if (found.rest.includes('--help') && !found.rest.slice(0, found.rest.indexOf('--help')).some((a) => !a.startsWith('-'))) {
      process.stdout.write(`Usage: ${cmd.usage}\n\n${cmd.summary}\n`);
      return 0;
    }
    return await cmd.run(found.rest);
  } catch (err) {
    // Messages may carry what a guest sent (agent errors, console lines, GuestDetails): made safe for a terminal.
    const debug = Boolean(process.env.VRUN_DEBUG);
    const stack = (e: Error) => (debug && e.stack ? `${terminalSafe(e.stack, { maxLength: 16_384 })}\n` : '');
    if (err instanceof VrunError) {
      process.stderr.write(`vrun: ${terminalSafeError(err, { maxLength: ERROR_MAX })}\n${err.hint ? `hint: ${terminalSafe(err.hint, { maxLength: ERROR_MAX })}\n` : ''}`);
      process.stderr.write(stack(err));
      return exitCodeFor(err);
    }
    process.stderr.write(`vrun: ${terminalSafeError(err, { maxLength: ERROR_MAX })}\n`);
    if (err instanceof Error) process.stderr.write(stack(err));
    return exitCodeFor(err);
  }
}
