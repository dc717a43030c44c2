import { describe, expect, it } from 'vitest';
import { exitCodeFor } from '../../src/cli/exit-codes.js';
import { ERROR_KINDS, VrunError } from '../../src/common/errors.js';
import { TtrpcError } from '../../src/ttrpc/status.js';

/** The CLI's one mapping from an error to its exit code: Docker's 125, 126 and 127. */
describe('CLI exit codes', () => {
  it('127 for a command the container does not have, 126 for one it cannot execute', () => {
    expect(exitCodeFor(new VrunError('nosuchcmd: command not found in the container', { kind: 'command-not-found' }))).toBe(127);
    expect(exitCodeFor(new VrunError('/etc/passwd: permission denied', { kind: 'command-not-executable' }))).toBe(126);
  });

  it('125 for every other kind, for errors that are not ours and for thrown non-errors', () => {
    for (const kind of ERROR_KINDS.filter((k) => !k.startsWith('command-'))) expect(exitCodeFor(new VrunError('x', { kind })), kind).toBe(125);
    expect(exitCodeFor(new VrunError('x'))).toBe(125);
    expect(exitCodeFor(new Error('x'))).toBe(125);
    expect(exitCodeFor('a string')).toBe(125);
    expect(exitCodeFor(undefined)).toBe(125);
  });

  it('follows the kind, not the words: a message that reads like a missing command is still 125', () => {
    expect(exitCodeFor(new VrunError('executable file `x` not found in $PATH: command not found'))).toBe(125);
    // A status code alone never means a missing command: NOT_FOUND is a missing container or image.
    expect(exitCodeFor(new TtrpcError(5, 'x: command not found'))).toBe(125);
  });
});
