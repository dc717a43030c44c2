/**
 * Whether this process's own log lines are read by a person (the `vrun` CLI) or by programs (containerd reads
 * the shim's JSON; the sandbox and the agent write JSON logs). Programs are the default: only a command line
 * opts in. Apart from log.ts so that the CLI can opt in at start without loading pino, which most commands
 * never need and which is slow to load.
 */
let program: string | undefined;

/** From now on, rootLogger() prints one plain line per warning or error, prefixed `<name>: ` (see log.ts). */
export function logForPeople(name: string): void {
  program = name;
}

/** The program name given to logForPeople, or undefined while the logs are for programs. */
export function peopleReadLogsOf(): string | undefined {
  return program;
}
