import { lstat, readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { VrunError } from './errors.js';

/**
 * Resolves Docker's `-u user[:group]` against a container's /etc/passwd and /etc/group. The rootfs is the
 * image's and untrusted: the files are read only when they resolve inside the rootfs, are regular files,
 * and are small; a missing file just means "numeric ids only". The host resolves the container's own user
 * before the guest runs (nothing can change the files then); an exec's `-u` is resolved by the agent in the
 * guest, since a running guest could swap the files between a host's check and its read.
 */
export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
}

const MAX_DB = 1 << 20;
const MAX_ID = 0xfffffffe;

async function readDb(rootfs: string, rel: string): Promise<string[][]> {
  const root = await realpath(rootfs);
  let real: string;
  try {
    real = await realpath(path.join(root, rel));
  } catch {
    return [];
  }
  if (real !== root && !real.startsWith(`${root}/`)) return [];
  const st = await lstat(real);
  if (!st.isFile() || st.size > MAX_DB) return [];
  return (await readFile(real, 'utf8'))
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

function numericId(v: string): number | undefined {
  if (!/^\d{1,10}$/.test(v)) return undefined;
  const n = Number(v);
  return n <= MAX_ID ? n : undefined;
}

export function parseUserSpec(spec: string): { user: string; group?: string } {
  const m = /^([A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}|\d{1,10})(?::([A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}|\d{1,10}))?$/.exec(spec);
  if (!m) throw new VrunError(`invalid value "${spec.slice(0, 80)}" for --user: expected name, uid, name:group or uid:gid`, { kind: 'invalid' });
  return { user: m[1] as string, group: m[2] };
}

export async function resolveUser(spec: string, rootfs: string): Promise<ResolvedUser> {
  const { user, group } = parseUserSpec(spec);
  const passwd = await readDb(rootfs, 'etc/passwd');
  const groups = await readDb(rootfs, 'etc/group');
  let uid = numericId(user);
  let gid: number | undefined;
  const entry = passwd.find((f) => (uid !== undefined ? numericId(f[2] ?? '') === uid : f[0] === user));
  if (uid === undefined) {
    if (!entry) throw new VrunError(`unable to find user ${user}: no matching entries in the image's /etc/passwd`, { kind: 'not-found' });
    uid = numericId(entry[2] ?? '');
    if (uid === undefined) throw new VrunError(`the image's /etc/passwd has an invalid uid for user ${user}`, { kind: 'invalid' });
  }
  if (entry) gid = numericId(entry[3] ?? '');
  if (group !== undefined) {
    gid = numericId(group);
    if (gid === undefined) {
      const g = groups.find((f) => f[0] === group);
      if (!g) throw new VrunError(`unable to find group ${group}: no matching entries in the image's /etc/group`, { kind: 'not-found' });
      gid = numericId(g[2] ?? '');
      if (gid === undefined) throw new VrunError(`the image's /etc/group has an invalid gid for group ${group}`, { kind: 'invalid' });
    }
  }
  const name = entry?.[0];
  const additional = name
    ? groups
        .filter((g) => (g[3] ?? '').split(',').includes(name))
        .map((g) => numericId(g[2] ?? ''))
        .filter((n): n is number => n !== undefined && n !== gid)
    : [];
  return { uid, gid: gid ?? 0, ...(additional.length > 0 ? { additionalGids: additional } : {}) };
}
