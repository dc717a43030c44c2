import { errorKind } from '../common/errors.js';

/**
 * The CLI's exit codes for its failures, Docker's: a container that ran exits with its own code instead
 * (run, exec). This is the only place a kind becomes an exit code.
 */
export const EXIT_RUNTIME_FAILED = 125;
export const EXIT_CANNOT_EXECUTE = 126;
export const EXIT_COMMAND_NOT_FOUND = 127;

export function exitCodeFor(err: unknown): number {
  switch (errorKind(err)) {
    case 'command-not-found':
      return EXIT_COMMAND_NOT_FOUND;
    case 'command-not-executable':
      return EXIT_CANNOT_EXECUTE;
    default:
      return EXIT_RUNTIME_FAILED;
  }
}
