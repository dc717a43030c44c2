import { readdir, readlink, rm } from 'node:fs/promises';
import path from 'node:path';
import { VrunError } from '../common/errors.js';
import { vrunRunDir } from '../common/paths.js';
import { allPids, isAlive, killSandboxProcesses, processBelongsTo, removeSandboxDir, unmountUnder } from './cleanup.js';
import { nameOwner, releaseName } from './names.js';
import { disconnectPod } from './network.js';
import { releaseRootfsOf } from './rootfs.js';
import { reclaimStaleJailIds } from '../vmm/jail/ids.js';
import { type SandboxState, ID_RE, hostBootId, listSandboxIds, namesDir, readState, sandboxPaths, shortId, writeState } from './state.js';

/**
 * The CLI's view of all sandboxes, reconciled with reality on every read: a sandbox whose process died is
 * marked failed (and its orphaned VMM and virtiofsd are stopped), and state left by a host crash (a different
 * boot id) is deleted. So stale state is collected by whatever command runs next.
 */
export async function reconcile(state: SandboxState, runDir = vrunRunDir()): Promise<SandboxState | undefined> {
  const paths = sandboxPaths(state.id, runDir);
  if (state.hostBootId !== hostBootId()) {
    // The namespace and the rules died with the boot; host-local's IP files and the CNI cache did not.
    await disconnectPod(state.id, state.config.network).catch(() => undefined);
    await unmountUnder(paths.dir);
    await rm(paths.dir, { recursive: true, force: true });
    await releaseName(state.name, state.id, runDir);
    return undefined;
  }
  if (state.status !== 'creating' && state.status !== 'running') return state;
  const daemon = state.pids.sandbox;
  // A sandbox being created has no daemon pid yet for a moment: give it the benefit of the doubt if young.
  if (daemon === undefined) {
    if (Date.now() - Date.parse(state.createdAt) < 30_000) return state;
  } else if (isAlive(daemon) && processBelongsTo(daemon, paths.dir)) return state;
  await killSandboxProcesses(allPids(state.pids), paths.dir);
  await unmountUnder(paths.dir);
  // Its IP and host ports go back now, as a stopped Docker container's do; a failure here is retried by `vrun rm`.
  await disconnectPod(state.id, state.config.network).catch(() => undefined);
  const died = 'the sandbox process died';
  const failed: SandboxState = { ...state, status: 'failed', error: state.error ?? died, finishedAt: new Date().toISOString() };
  await writeState(failed, runDir);
  return failed;
}

export async function listSandboxes(runDir = vrunRunDir()): Promise<SandboxState[]> {
  const out: SandboxState[] = [];
  for (const id of await listSandboxIds(runDir)) {
    let s: SandboxState | undefined;
    try {
      s = await readState(id, runDir);
    } catch {
      continue;
    }
    if (!s) continue;
    const r = await reconcile(s, runDir);
    if (r) out.push(r);
  }
  await collectDanglingNames(runDir);
  return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
}

async function collectDanglingNames(runDir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(namesDir(runDir));
  } catch {
    return;
  }
  const ids = new Set(await listSandboxIds(runDir));
  for (const n of names) {
    const target = await readlink(path.join(namesDir(runDir), n)).catch(() => '');
    if (!ID_RE.test(target) || !ids.has(target)) await rm(path.join(namesDir(runDir), n), { force: true });
  }
}

/** Finds a container by name, full id or unique id prefix (Docker's rules). */
export async function findSandbox(ref: string, runDir = vrunRunDir()): Promise<SandboxState> {
  const byName = await nameOwner(ref, runDir);
  const all = await listSandboxes(runDir);
  if (byName) {
    const s = all.find((x) => x.id === byName);
    if (s) return s;
  }
  if (/^[a-f0-9]{1,32}$/.test(ref)) {
    const matches = all.filter((x) => x.id.startsWith(ref));
    if (matches.length === 1) return matches[0] as SandboxState;
    if (matches.length > 1) throw new VrunError(`multiple containers match "${ref}": use more of the id`);
  }
  throw new VrunError(`no such container: ${ref.slice(0, 140)}`, { kind: 'not-found' });
}

/** `rm -f` and `rm`: everything of the sandbox goes, whatever state it was in. */
export async function removeSandbox(state: SandboxState, runDir = vrunRunDir()): Promise<void> {
  const paths = sandboxPaths(state.id, runDir);
  // The network after the processes (the VMM holds the tap) and before the record: a network that cannot be
  // released keeps the record, so `vrun rm` can be run again once the cause is fixed.
  const survivors = await killSandboxProcesses(allPids(state.pids), paths.dir);
  if (survivors.length === 0) await disconnectPod(state.id, state.config.network);
  const problem = await removeSandboxDir(paths.dir, allPids(state.pids));
  if (problem) throw new VrunError(problem);
  // A sandbox killed with -9 left its VMM's jail id and cgroups behind: free them now, not at the next start.
  reclaimStaleJailIds();
  await releaseRootfsOf(state.id);
  await releaseName(state.name, state.id, runDir);
}

export { shortId };
