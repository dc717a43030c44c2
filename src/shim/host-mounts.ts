import { execFile } from 'node:child_process';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { errorMessage } from '../common/errors.js';
import { unmountUnder } from '../sandbox/cleanup.js';
import type { Mount } from './protocol/types.js';
import { Code, TtrpcError } from '../ttrpc/status.js';

/**
 * Host-side mounts into the pod's shared directory (which virtiofsd serves to the guest): the rootfs
 * containerd's snapshotter prepared, and the host sources of bind mounts. They are made before the guest
 * is told about the path, so the guest never caches the empty directory underneath.
 */
const run = promisify(execFile);

async function mountCmd(args: string[], what: string): Promise<void> {
  try {
    await run('mount', args, { timeout: 30_000 });
  } catch (err) {
    const e = err as { stderr?: string };
    throw new TtrpcError(Code.FAILED_PRECONDITION, `mounting ${what} failed: ${(e.stderr ?? errorMessage(err)).trim()}`);
  }
}

function isBind(m: Mount): boolean {
  return m.type === 'bind' || m.type === 'rbind' || m.options.includes('bind') || m.options.includes('rbind');
}

/** Mounts containerd's rootfs mounts (or the bundle's own rootfs when there are none) at `target`. */
export async function mountRootfs(mounts: Mount[], bundleRootfs: string, target: string): Promise<void> {
  await mkdir(target, { recursive: true, mode: 0o755 });
  if (mounts.length === 0) {
    await bindMount(bundleRootfs, target, false);
    return;
  }
  if (mounts.length > 1) throw new TtrpcError(Code.INVALID_ARGUMENT, `vrun takes one rootfs mount, containerd sent ${mounts.length}`);
  const m = mounts[0] as Mount;
  if (isBind(m)) {
    await bindMount(m.source, target, m.options.includes('ro'));
    return;
  }
  const opts = m.options.filter((o) => o !== '');
  await mountCmd(['-t', m.type, ...(opts.length > 0 ? ['-o', opts.join(',')] : []), m.source, target], `the rootfs (${m.type})`);
}

/** A recursive bind of `source` (file or directory) at `target`, read-only when asked. */
export async function bindMount(source: string, target: string, readonly: boolean): Promise<void> {
  let st;
  try {
    st = await stat(source);
  } catch (err) {
    throw new TtrpcError(Code.INVALID_ARGUMENT, `bind mount source ${source}: ${errorMessage(err)}`);
  }
  if (st.isDirectory()) await mkdir(target, { recursive: true });
  else {
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, '', { flag: 'a' });
  }
  await mountCmd(['--rbind', source, target], `${source}`);
  if (readonly) await mountCmd(['-o', 'remount,bind,ro', target], `${source} read-only`);
}

export async function unmountAll(dir: string): Promise<void> {
  await unmountUnder(dir);
}
