import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { VrunError } from '../common/errors.js';
import type { RunConfig, VolumeSpec } from '../sandbox/run-config.js';
import { validateName } from '../sandbox/names.js';
import { parseUserSpec } from '../common/user-db.js';
import { parseVmmChoice } from '../vmm/backend.js';
import { type FlagSpecs, parseArgs } from './args.js';
import { parsePositiveNumber, parseSize } from './units.js';
import { parseHostname, parseNetworkFlags } from './network-options.js';

/** `vrun run`'s flags, Docker's names and meanings. */
export const RUN_FLAGS = {
  vm: { type: 'boolean', description: 'Run in a VM (always on; accepted for clarity)' },
  detach: { type: 'boolean', short: 'd', description: 'Run in the background and print the container id' },
  rm: { type: 'boolean', description: 'Remove the container when it exits' },
  interactive: { type: 'boolean', short: 'i', description: 'Keep stdin open' },
  tty: { type: 'boolean', short: 't', description: 'Allocate a terminal' },
  name: { type: 'string', value: 'NAME', description: 'Name the container' },
  env: { type: 'list', short: 'e', value: 'K=V', description: 'Set an environment variable' },
  'env-file': { type: 'list', value: 'FILE', description: 'Read environment variables from a file' },
  volume: { type: 'list', short: 'v', value: 'HOST:CTR[:ro]', description: 'Share a host directory into the container' },
  workdir: { type: 'string', short: 'w', value: 'DIR', description: 'Working directory inside the container' },
  user: { type: 'string', short: 'u', value: 'USER[:GROUP]', description: 'User to run as' },
  cpus: { type: 'string', value: 'N', description: 'CPU limit (also the VM\'s vCPU count, rounded up)' },
  memory: { type: 'string', short: 'm', value: 'SIZE', description: 'Memory limit, e.g. 64m' },
  'pids-limit': { type: 'string', value: 'N', description: 'Limit the number of processes' },
  'read-only': { type: 'boolean', description: 'Mount the root filesystem read-only' },
  entrypoint: { type: 'string', value: 'CMD', description: 'Override the image\'s entrypoint' },
  vmm: { type: 'string', value: 'auto|qemu|native', description: 'Which VMM runs the VM (default auto)' },
  network: { type: 'string', value: 'bridge|none|NAME', description: 'Connect to a network (default bridge; see vrun network ls)' },
  publish: { type: 'list', short: 'p', value: '[IP:]HOSTPORT:CTRPORT[/PROTO]', description: 'Publish a container port on the host' },
  dns: { type: 'list', value: 'IP', description: 'Set a DNS server' },
  'dns-search': { type: 'list', value: 'DOMAIN', description: 'Set a DNS search domain' },
  'dns-option': { type: 'list', value: 'OPTION', description: 'Set a DNS option' },
  'add-host': { type: 'list', value: 'NAME:IP', description: 'Add a line to /etc/hosts' },
  hostname: { type: 'string', value: 'NAME', description: 'Container host name' },
} as const satisfies FlagSpecs;

export interface RunRequest {
  config: RunConfig;
  name?: string;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** `-e K=V` sets; `-e K` copies K from vrun's own environment (skipped if unset), like Docker. */
export function parseEnvEntry(entry: string, where: string): string | undefined {
  if (entry.includes('\0')) throw new VrunError(`invalid environment entry in ${where}: contains a NUL byte`, { kind: 'invalid' });
  const eq = entry.indexOf('=');
  const name = eq < 0 ? entry : entry.slice(0, eq);
  if (!ENV_NAME.test(name)) throw new VrunError(`invalid environment variable name "${name.slice(0, 80)}" in ${where}`, { kind: 'invalid' });
  if (eq >= 0) return entry;
  const v = process.env[name];
  return v === undefined ? undefined : `${name}=${v}`;
}

export function parseEnvFile(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new VrunError(`cannot read --env-file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { kind: 'invalid' });
  }
  const out: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '').trim();
    if (!line || line.startsWith('#')) return;
    const e = parseEnvEntry(line, `${file} line ${i + 1}`);
    if (e !== undefined) out.push(e);
  });
  return out;
}

export function parseVolume(spec: string): VolumeSpec {
  const parts = spec.split(':');
  if (parts.length < 2 || parts.length > 3) throw new VrunError(`invalid volume "${spec.slice(0, 200)}": expected HOST_DIR:CONTAINER_PATH[:ro|rw]`, { kind: 'invalid' });
  const [host, ctr, mode] = parts as [string, string, string | undefined];
  if (mode !== undefined && mode !== 'ro' && mode !== 'rw') throw new VrunError(`invalid volume mode "${mode}" in "${spec.slice(0, 200)}": expected ro or rw`, { kind: 'invalid' });
  if (!path.isAbsolute(host)) throw new VrunError(`invalid volume "${spec.slice(0, 200)}": the host path must be absolute (named volumes are not supported)`, { kind: 'invalid' });
  if (!path.isAbsolute(ctr) || ctr.includes('\0')) throw new VrunError(`invalid volume "${spec.slice(0, 200)}": the container path must be absolute`, { kind: 'invalid' });
  if (path.normalize(ctr) === '/') throw new VrunError(`invalid volume "${spec.slice(0, 200)}": cannot mount over the container's /`, { kind: 'invalid' });
  if (!existsSync(host)) throw new VrunError(`volume host path ${host} does not exist`, { kind: 'invalid' });
  if (!statSync(host).isDirectory()) throw new VrunError(`volume host path ${host} is not a directory (only directories can be shared into the VM)`, { kind: 'invalid' });
  return { hostPath: path.resolve(host), containerPath: path.normalize(ctr).replace(/(.)\/+$/, '$1'), readonly: mode === 'ro' };
}

/** Parses and validates everything before anything is created, so bad input leaves nothing behind. */
export function parseRunArgs(argv: string[], env: { debug: boolean }): RunRequest {
  const { flags, positionals } = parseArgs(argv, RUN_FLAGS, { command: 'run' });
  const [image, ...args] = positionals;
  if (!image) throw new VrunError('"vrun run" requires an image: vrun run [OPTIONS] IMAGE [COMMAND] [ARG...]', { kind: 'invalid' });
  if (flags.name !== undefined) validateName(flags.name);
  if (flags.user !== undefined) parseUserSpec(flags.user);
  if (flags.workdir !== undefined && !path.isAbsolute(flags.workdir)) throw new VrunError(`invalid value "${flags.workdir}" for --workdir: must be an absolute path`, { kind: 'invalid' });
  const envs: string[] = [];
  for (const f of flags['env-file']) envs.push(...parseEnvFile(f));
  for (const e of flags.env) {
    const v = parseEnvEntry(e, '--env');
    if (v !== undefined) envs.push(v);
  }
  const config: RunConfig = {
    image,
    args,
    entrypoint: flags.entrypoint,
    env: envs,
    workdir: flags.workdir,
    user: flags.user,
    tty: flags.tty,
    interactive: flags.interactive,
    detach: flags.detach,
    autoRemove: flags.rm,
    cpus: flags.cpus !== undefined ? parsePositiveNumber(flags.cpus, '--cpus', { max: 64 }) : undefined,
    memoryBytes: flags.memory !== undefined ? parseSize(flags.memory, '--memory') : undefined,
    pidsLimit: flags['pids-limit'] !== undefined ? parsePositiveNumber(flags['pids-limit'], '--pids-limit', { integer: true, max: 4_194_304 }) : undefined,
    readOnly: flags['read-only'],
    volumes: flags.volume.map(parseVolume),
    vmm: parseVmmChoice(flags.vmm),
    debug: env.debug,
    hostname: flags.hostname !== undefined ? parseHostname(flags.hostname) : undefined,
    network: parseNetworkFlags(flags),
  };
  if (config.memoryBytes !== undefined && config.memoryBytes < 6 * 2 ** 20) throw new VrunError(`invalid value "${flags.memory}" for --memory: the minimum is 6m`, { kind: 'invalid' });
  if (config.memoryBytes !== undefined && config.memoryBytes > 64 * 2 ** 30) throw new VrunError(`invalid value "${flags.memory}" for --memory: the maximum is 64g`, { kind: 'invalid' });
  const dests = new Set<string>();
  for (const v of config.volumes) {
    if (dests.has(v.containerPath)) throw new VrunError(`duplicate mount point ${v.containerPath}`, { kind: 'invalid' });
    dests.add(v.containerPath);
  }
  if (config.volumes.length > 16) throw new VrunError('at most 16 volumes per container', { kind: 'invalid' });
  return { config, name: flags.name };
}
