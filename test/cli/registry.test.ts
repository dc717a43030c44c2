import { describe, expect, it } from 'vitest';
import { commands } from '../../src/cli/registry.js';

/** The registry repeats each command's name, aliases and summary so `vrun --help` needs no command module: they must agree. */
describe('CLI command registry', () => {
  it.each(commands.map((c) => [c.name, c] as const))('%s: the registry entry matches the command module', async (_name, entry) => {
    const cmd = await entry.load();
    expect({ name: entry.name, aliases: entry.aliases ?? [], summary: entry.summary }).toEqual({ name: cmd.name, aliases: cmd.aliases ?? [], summary: cmd.summary });
    expect(cmd.usage).toMatch(/^vrun /);
  });

  it('has no two commands answering to one name', () => {
    const names = commands.flatMap((c) => [c.name, ...(c.aliases ?? [])]);
    expect(new Set(names).size).toBe(names.length);
  });
});
