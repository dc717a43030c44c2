/**
 * Errors meant for people. The CLI prints `message` on one line (and the stack only with --debug),
 * then exits with `exitCode`: 125 follows Docker's convention for "the runtime itself failed".
 */
export class VrunError extends Error {
  readonly exitCode: number;
  readonly hint: string | undefined;

  constructor(message: string, opts: { exitCode?: number; hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'VrunError';
    this.exitCode = opts.exitCode ?? 125;
    this.hint = opts.hint;
  }
}

/** A host tool the project relies on is absent; names the Debian package that provides it. */
export class MissingDependencyError extends VrunError {
  constructor(what: string, debianPackage: string) {
    super(`${what} not found: install the Debian package "${debianPackage}" (apt-get install ${debianPackage})`);
    this.name = 'MissingDependencyError';
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
