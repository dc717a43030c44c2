import { VrunError } from '../common/errors.js';

/**
 * The command line containerd 1.6 gives a shim binary: Go-style flags (`-namespace ns`, `-id=x`, `--debug`)
 * then one action. `start` and `delete` run with the bundle as the working directory.
 */
export interface ShimFlags {
  namespace: string;
  address: string;
  publishBinary: string;
  id: string;
  bundle: string | undefined;
  debug: boolean;
  action: string;
  /** Arguments after the action (the serving process gets its state directory this way). */
  rest: string[];
}

const VALUE_FLAGS = new Map<string, keyof ShimFlags>([
  ['namespace', 'namespace'],
  ['address', 'address'],
  ['publish-binary', 'publishBinary'],
  ['id', 'id'],
  ['bundle', 'bundle'],
]);
const BOOL_FLAGS = new Set(['debug', 'v', 'version']);

export function parseShimFlags(argv: string[]): ShimFlags {
  const out: Record<string, string | boolean | undefined> = { debug: false };
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith('-')) break;
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    if (BOOL_FLAGS.has(name)) {
      out[name === 'debug' ? 'debug' : 'version'] = eq >= 0 ? body.slice(eq + 1) !== 'false' : true;
      continue;
    }
    const key = VALUE_FLAGS.get(name);
    if (!key) throw new VrunError(`containerd-shim-vrun-v2: unknown flag -${name}`);
    const value = eq >= 0 ? body.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new VrunError(`containerd-shim-vrun-v2: flag -${name} needs a value`);
    out[key] = value;
  }
  const action = out.version === true ? 'version' : (argv[i] ?? '');
  return {
    namespace: typeof out.namespace === 'string' ? out.namespace : (process.env.NAMESPACE ?? ''),
    address: typeof out.address === 'string' ? out.address : '',
    publishBinary: typeof out.publishBinary === 'string' ? out.publishBinary : '',
    id: typeof out.id === 'string' ? out.id : '',
    bundle: typeof out.bundle === 'string' ? out.bundle : undefined,
    debug: out.debug === true,
    action,
    rest: argv.slice(i + 1),
  };
}
