/**
 * What kind of failure an error is, as containerd's errdefs say it, plus the two Docker gives exit codes of
 * their own: a command the container does not have (127) and one it cannot execute (126). Callers branch on
 * the kind, never on message text; error-codes.ts maps kinds to gRPC/ttrpc status codes and back, and the CLI
 * (src/cli/exit-codes.ts) maps them to exit codes.
 */
export const ERROR_KINDS = [
  'invalid',
  'not-found',
  'exists',
  'precondition',
  'unavailable',
  'permission',
  'not-implemented',
  'canceled',
  'deadline',
  'resource-exhausted',
  'internal',
  'command-not-found',
  'command-not-executable',
] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

const KINDS: ReadonlySet<string> = new Set(ERROR_KINDS);

/** True for exactly the kinds above: a kind read from a file, a socket or a guest passes this or is dropped. */
export function isErrorKind(v: unknown): v is ErrorKind {
  return typeof v === 'string' && v.length <= 32 && KINDS.has(v);
}

/**
 * Errors meant for people. The CLI prints `message` on one line (and the stack only with --debug), then
 * exits with the code its kind maps to (125, Docker's "the runtime itself failed", unless the container's
 * command was missing or not executable).
 */
export class VrunError extends Error {
  readonly kind: ErrorKind;
  readonly hint: string | undefined;

  constructor(message: string, opts: { kind?: ErrorKind; hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'VrunError';
    this.kind = opts.kind ?? 'internal';
    this.hint = opts.hint;
  }
}

/** A host tool the project relies on is absent; names the Debian package that provides it. */
export class MissingDependencyError extends VrunError {
  constructor(what: string, debianPackage: string) {
    super(`${what} not found: install the Debian package "${debianPackage}" (apt-get install ${debianPackage})`, { kind: 'precondition' });
    this.name = 'MissingDependencyError';
  }
}

/** The kind of any thrown value: anything that is not a VrunError is an internal failure. */
export function errorKind(err: unknown): ErrorKind {
  return err instanceof VrunError ? err.kind : 'internal';
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
