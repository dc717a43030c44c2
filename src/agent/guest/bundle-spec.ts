/** Checks of what the host sends about a container (the OCI spec, an exec's process) before the agent uses it. */
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { internal, invalid } from '../protocol/rpc-error.js';

export function parseJsonObject(what: string, text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw invalid(`${what} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(`${what} must be a JSON object`);
  return v as Record<string, unknown>;
}

export function checkProcess(what: string, p: unknown): Record<string, unknown> {
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw invalid(`${what} must be an object`);
  const proc = p as Record<string, unknown>;
  const args = proc.args;
  if (!Array.isArray(args) || args.length === 0 || !args.every((a) => typeof a === 'string')) throw invalid(`${what}.args must be a non-empty array of strings`);
  if (proc.cwd !== undefined && (typeof proc.cwd !== 'string' || !proc.cwd.startsWith('/'))) throw invalid(`${what}.cwd must be an absolute path`);
  if (proc.env !== undefined && (!Array.isArray(proc.env) || !proc.env.every((e) => typeof e === 'string'))) throw invalid(`${what}.env must be an array of strings`);
  return proc;
}

/** Whether `dir` lies on a read-only mount: the kernel answers write-access checks there with EROFS. */
export async function onReadOnlyMount(dir: string): Promise<boolean> {
  try {
    await access(dir, constants.W_OK);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EROFS';
  }
}

export function hasHooks(spec: Record<string, unknown>, kind: 'poststart' | 'poststop'): boolean {
  const hooks = spec.hooks as Record<string, unknown> | undefined;
  return Array.isArray(hooks?.[kind]) && (hooks[kind] as unknown[]).length > 0;
}

/** The container's rootfs as the agent wrote it into the bundle's config.json (the agent's own file). */
export async function bundleRootfs(bundle: string): Promise<string> {
  const spec = parseJsonObject('config.json', await readFile(path.join(bundle, 'config.json'), 'utf8'));
  const root = (spec.root as { path?: unknown } | undefined)?.path;
  if (typeof root !== 'string' || !path.isAbsolute(root)) throw internal(`the bundle ${bundle} names no absolute rootfs`);
  return root;
}
