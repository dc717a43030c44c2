/**
 * Validation of request values that name things in the guest: ids, paths, signals. Everything from the
 * host is treated as hostile: an id becomes a directory name, a path must stay inside the agent's own
 * directories, a signal must be one the kernel knows.
 */
import { realpath, stat } from 'node:fs/promises';
import { constants } from 'node:os';
import path from 'node:path';
import { checkId as checkCommonId, isValidId } from '../../common/ids.js';
import { invalid } from '../protocol/rpc-error.js';

export function checkId(what: 'container_id' | 'exec_id', value: string): string {
  return checkCommonId(what, value);
}

export function isSafeId(value: string): boolean {
  return isValidId(value);
}

/** An empty exec id names the init process. */
export function checkExecId(value: string): string {
  return value === '' ? '' : checkId('exec_id', value);
}

function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * Resolves an absolute guest path (following symlinks) and requires it to be a directory inside one of
 * `roots`; returns the resolved path so nothing can swap a symlink in between.
 */
export async function checkDirInside(what: string, value: string, roots: string[]): Promise<string> {
  if (!path.isAbsolute(value)) throw invalid(`${what} ${JSON.stringify(value)} must be an absolute path`);
  let resolved: string;
  try {
    resolved = await realpath(value);
  } catch {
    throw invalid(`${what} ${JSON.stringify(value)} does not exist`);
  }
  const realRoots = await Promise.all(roots.map((r) => realpath(r).catch(() => path.resolve(r))));
  if (!realRoots.some((r) => inside(resolved, r))) {
    throw invalid(`${what} ${JSON.stringify(value)} is outside the agent's directories (${roots.join(', ')})`);
  }
  if (!(await stat(resolved)).isDirectory()) throw invalid(`${what} ${JSON.stringify(value)} is not a directory`);
  return resolved;
}

/** A relative path that stays under `root` lexically (no "..", no absolute); returns root-joined path. */
export function checkRelativeUnder(what: string, value: string, root: string): string {
  if (value === '' || path.isAbsolute(value) || value.length > 255) throw invalid(`${what} ${JSON.stringify(value.slice(0, 80))} must be a relative path (1-255 chars)`);
  const joined = path.resolve(root, value);
  if (!inside(joined, root) || joined === path.resolve(root)) throw invalid(`${what} ${JSON.stringify(value)} leaves ${root}`);
  return joined;
}

/** "SIGTERM", "TERM", "15" -> 15. Unknown names and numbers outside 1..64 are rejected. */
export function parseSignal(value: string): number {
  const v = value.trim();
  if (/^\d{1,2}$/.test(v)) {
    const n = Number(v);
    if (n >= 1 && n <= 64) return n;
    throw invalid(`signal ${v} is out of range (1..64)`);
  }
  const name = (v.toUpperCase().startsWith('SIG') ? v.toUpperCase() : `SIG${v.toUpperCase()}`) as keyof typeof constants.signals;
  const n = Object.hasOwn(constants.signals, name) ? constants.signals[name] : undefined;
  if (n === undefined) throw invalid(`unknown signal ${JSON.stringify(value.slice(0, 32))}`);
  return n;
}
