import { VrunError } from '../common/errors.js';

/**
 * Docker-style argument parsing: flags come before the first positional argument, and everything
 * from there on belongs to the command (so `vrun run busybox ls -la` passes `-la` to `ls`).
 * Short boolean flags may be grouped (`-it`); values may be attached (`--name=x`, `-ex=1`) or separate.
 */
export type FlagType = 'boolean' | 'string' | 'list';

export interface FlagSpec {
  type: FlagType;
  short?: string;
  description: string;
  /** Placeholder shown in help, e.g. "SIZE". */
  value?: string;
}

export type FlagSpecs = Record<string, FlagSpec>;

export type ParsedFlags<S extends FlagSpecs> = {
  [K in keyof S]: S[K]['type'] extends 'boolean' ? boolean : S[K]['type'] extends 'list' ? string[] : string | undefined;
};

export interface Parsed<S extends FlagSpecs> {
  flags: ParsedFlags<S>;
  positionals: string[];
}

export function parseArgs<S extends FlagSpecs>(
  argv: readonly string[],
  specs: S,
  opts: { stopAtPositional?: boolean; command?: string } = {},
): Parsed<S> {
  const stopAtPositional = opts.stopAtPositional ?? true;
  const where = opts.command ? ` for "vrun ${opts.command}"` : '';
  const flags: Record<string, boolean | string | string[] | undefined> = {};
  const byShort = new Map<string, string>();
  for (const [name, spec] of Object.entries(specs)) {
    flags[name] = spec.type === 'boolean' ? false : spec.type === 'list' ? [] : undefined;
    if (spec.short) byShort.set(spec.short, name);
  }
  const positionals: string[] = [];

  const assign = (name: string, value: string | undefined, next: () => string | undefined) => {
    const spec = specs[name];
    if (!spec) throw new VrunError(`unknown flag: --${name}${where}`, { kind: 'invalid' });
    if (spec.type === 'boolean') {
      if (value !== undefined && value !== 'true' && value !== 'false') {
        throw new VrunError(`invalid value "${value}" for --${name}: expected true or false`, { kind: 'invalid' });
      }
      flags[name] = value !== 'false';
      return;
    }
    const v = value ?? next();
    if (v === undefined) throw new VrunError(`flag --${name} needs a value${spec.value ? ` (${spec.value})` : ''}`, { kind: 'invalid' });
    if (spec.type === 'list') (flags[name] as string[]).push(v);
    else flags[name] = v;
  };

  let i = 0;
  const next = () => (i + 1 < argv.length ? argv[++i] : undefined);
  for (; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      assign(name, eq >= 0 ? arg.slice(eq + 1) : undefined, next);
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      // Grouped short flags: every letter but the last must be boolean; a value may follow the last.
      for (let j = 1; j < arg.length; j++) {
        const ch = arg[j] as string;
        const name = byShort.get(ch);
        if (!name) throw new VrunError(`unknown flag: -${ch}${where}`, { kind: 'invalid' });
        const spec = specs[name] as FlagSpec;
        if (spec.type === 'boolean') {
          flags[name] = true;
          continue;
        }
        const rest = arg.slice(j + 1);
        assign(name, rest.length > 0 ? rest.replace(/^=/, '') : undefined, next);
        break;
      }
      continue;
    }
    positionals.push(arg);
    if (stopAtPositional) {
      positionals.push(...argv.slice(i + 1));
      break;
    }
  }
  return { flags: flags as ParsedFlags<S>, positionals };
}

export function formatFlagHelp(specs: FlagSpecs): string {
  const rows = Object.entries(specs).map(([name, s]) => {
    const left = `${s.short ? `-${s.short}, ` : '    '}--${name}${s.value ? ` ${s.value}` : ''}`;
    return `  ${left.padEnd(30)} ${s.description}`;
  });
  return rows.join('\n');
}
