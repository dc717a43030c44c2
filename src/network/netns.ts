import fs from 'node:fs';
import path from 'node:path';
import { VrunError } from '../common/errors.js';
import { checkId } from '../common/ids.js';
import { run, runChecked, type RunOptions, type RunResult } from './exec.js';

/**
 * A pod's network namespace, pinned by a bind-mounted nsfs file as `ip netns add` makes it.
 *
 * It lives in /run/netns (as `vrun-<sandbox id>`) rather than under /run/vrun: `ip netns list/exec/identify`,
 * nerdctl, podman and CNI tooling all look there, so an operator can debug a pod's network with the usual
 * commands, and the jailer joins it by path (--netns /run/netns/NAME). `ip netns add` also makes /run/netns a
 * shared mount, so the unmount in deleteNetns propagates into mount namespaces cloned after the netns was made
 * (the jailer's, virtiofsd's); with a private bind under /run/vrun, such a clone would keep a copy of the mount
 * and the namespace (with its veth and IP) alive after the pod is gone.
 */
export const NETNS_DIR = '/run/netns';
const PREFIX = 'vrun-';

export function netnsName(sandboxId: string): string {
  return PREFIX + checkId('sandbox id', sandboxId);
}

export function netnsPath(sandboxId: string): string {
  return path.join(NETNS_DIR, netnsName(sandboxId));
}

/** Creates the namespace with only `lo`, up; returns its nsfs path. An existing one is an 'exists' error. */
export async function createNetns(sandboxId: string): Promise<string> {
  const name = netnsName(sandboxId);
  const r = await run(['ip', 'netns', 'add', name]);
  if (r.code !== 0) {
    const exists = /File exists/.test(r.stderr);
    throw new VrunError(`cannot create network namespace ${name}: ${r.stderr.trim() || `ip exited with ${r.code}`}`, { kind: exists ? 'exists' : 'internal' });
  }
  const file = path.join(NETNS_DIR, name);
  try {
    await runChecked(['ip', 'link', 'set', 'lo', 'up'], { netns: file, what: `bringing up lo in ${name}` });
  } catch (e) {
    await deleteNetns(sandboxId).catch(() => undefined);
    throw e;
  }
  return file;
}

/** Unmounts and removes the namespace file; nothing to do when it is already gone. */
export async function deleteNetns(sandboxId: string): Promise<void> {
  const name = netnsName(sandboxId);
  if (!fs.existsSync(path.join(NETNS_DIR, name))) return;
  const r = await run(['ip', 'netns', 'delete', name]);
  if (r.code !== 0 && fs.existsSync(path.join(NETNS_DIR, name))) {
    throw new VrunError(`cannot delete network namespace ${name}: ${r.stderr.trim() || `ip exited with ${r.code}`}`, { kind: 'internal' });
  }
}

/** True when the file exists and is an nsfs mount (not an empty file left by a crash mid-create). */
export function isNetnsMounted(file: string): boolean {
  try {
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    return mounts.split('\n').some((l) => l.split(' ')[4] === file && / - nsfs /.test(l));
  } catch {
    return false;
  }
}

/** Sandbox ids that have a vrun namespace file, mounted or not. */
export function listVrunNetns(): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(NETNS_DIR);
  } catch {
    return [];
  }
  return names.filter((n) => n.startsWith(PREFIX)).map((n) => n.slice(PREFIX.length));
}

/** Runs a program inside the namespace at `file` (any nsfs path). */
export function runInNetns(file: string, argv: readonly string[], opts: Omit<RunOptions, 'netns'> = {}): Promise<RunResult> {
  return run(argv, { ...opts, netns: file });
}
