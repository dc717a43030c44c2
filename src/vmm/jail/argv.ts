/**
 * The command line of native/jailer/vrun-jailer (see the header comment there for what each option does).
 * Paths are host paths: the jail mirrors each bound path at the same place, so PROGRAM's own arguments
 * need no rewriting.
 */
export type RlimitName = 'nofile' | 'nproc' | 'fsize' | 'core' | 'memlock' | 'as';
export type RlimitValue = number | 'unlimited';

export interface JailSpec {
  /** Required unless `usernsFd` is given. */
  uid?: number;
  gid?: number;
  /**
   * The fd (in the jailer) of a user namespace whose mapping leaves host id 0 out: the program runs as its
   * uid/gid 0, instead of `uid`/`gid`.
   */
  usernsFd?: number;
  /** With `usernsFd`: directories bound id-mapped with the namespace's mapping. */
  idmapBinds?: string[];
  /** Unix sockets the jailer creates, listening, and hands to the program as fd `fd`. */
  listens?: { fd: number; path: string }[];
  groups?: number[];
  /** Existing, empty, root-owned directory without symlinks on its path. */
  root: string;
  roBinds?: string[];
  rwBinds?: string[];
  /** Besides null, zero and urandom, which the jailer always provides. */
  devs?: string[];
  symlinks?: { target: string; link: string }[];
  proc?: boolean;
  hostname?: string;
  /** 'new' (the default) or a network namespace to join, e.g. /run/netns/NAME. */
  netns?: string;
  /**
   * Persistent taps in `netns` the jailer opens (as root, before dropping privileges) and hands to the program
   * as fd `fd`: the program needs neither /dev/net/tun nor the tap's ownership.
   */
  taps?: { fd: number; name: string }[];
  cgroups?: string[];
  rlimits?: Partial<Record<RlimitName, RlimitValue | [RlimitValue, RlimitValue]>>;
  env?: Record<string, string>;
  keepFds?: number[];
}

export function jailerArgs(spec: JailSpec, program: string, args: string[] = []): string[] {
  const out = spec.usernsFd !== undefined ? ['--userns-fd', String(spec.usernsFd)] : ['--uid', String(spec.uid), '--gid', String(spec.gid)];
  out.push('--root', spec.root);
  for (const p of spec.idmapBinds ?? []) out.push('--idmap-bind', p);
  for (const l of spec.listens ?? []) out.push('--listen', `${l.fd}:${l.path}`);
  if (spec.groups?.length) out.push('--groups', spec.groups.join(','));
  for (const p of spec.roBinds ?? []) out.push('--ro-bind', p);
  for (const p of spec.rwBinds ?? []) out.push('--rw-bind', p);
  for (const d of spec.devs ?? []) out.push('--dev', d);
  for (const s of spec.symlinks ?? []) out.push('--symlink', `${s.target}:${s.link}`);
  if (spec.proc) out.push('--proc');
  if (spec.hostname) out.push('--hostname', spec.hostname);
  out.push('--netns', spec.netns ?? 'new');
  for (const t of spec.taps ?? []) out.push('--tap', `${t.fd}:${t.name}`);
  for (const c of spec.cgroups ?? []) out.push('--cgroup', c);
  for (const [name, v] of Object.entries(spec.rlimits ?? {})) {
    if (v === undefined) continue;
    out.push('--rlimit', `${name}=${Array.isArray(v) ? `${v[0]}:${v[1]}` : v}`);
  }
  for (const [k, v] of Object.entries(spec.env ?? {})) out.push('--env', `${k}=${v}`);
  for (const fd of spec.keepFds ?? []) out.push('--keep-fd', String(fd));
  out.push('--', program, ...args);
  return out;
}
