/** One CLI command. Each lives in src/cli/commands/<name>.ts and is registered in src/cli/registry.ts. */
export interface Command {
  name: string;
  /** Extra names, e.g. "image ls" for "images". */
  aliases?: string[];
  summary: string;
  usage: string;
  /** Returns the process exit code. Throw VrunError for errors meant for people. */
  run(argv: string[]): Promise<number>;
}
