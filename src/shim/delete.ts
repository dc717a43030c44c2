import { processBelongsTo, removeSandboxDir } from '../sandbox/cleanup.js';
import { timestampFromDate } from '../ttrpc/protobuf/well-known.js';
import type { ShimFlags } from './flags.js';
import { GuestShare } from '../sandbox/guest-share.js';
import { reclaimStaleJailIds } from '../vmm/jail/ids.js';
import { groupIdOf, podDirFor, podPaths, readBundleAnnotations, readPodRecord } from './pod-paths.js';
import { readNetworkRecord, releaseRecordedNetwork } from './pod-network.js';
import { DeleteResponse } from './protocol/task-messages.js';

/**
 * containerd's `delete`, run after a shim died (or a start failed): undo what the dead shim left — its VM,
 * virtiofsd and mounts — and answer with the DeleteResponse containerd reports as the task's exit (137,
 * as if killed). When the pod's shim still serves other containers, only this container's mounts go.
 */
export async function deleteAfterShim(flags: ShimFlags): Promise<Uint8Array> {
  const bundle = flags.bundle ?? process.cwd();
  const annotations = await readBundleAnnotations(bundle).catch(() => ({}));
  const dir = podDirFor(flags.namespace, groupIdOf(flags.id, annotations));
  const paths = podPaths(dir);
  const rec = await readPodRecord(paths).catch(() => undefined);
  const shimPid = rec?.pids.shim;
  const shimAlive = shimPid !== undefined && processBelongsTo(shimPid, dir);
  if (shimAlive) {
    await GuestShare.existing(dir).remove(flags.id);
  } else {
    const fsds: unknown[] = Array.isArray(rec?.pids.virtiofsd) ? rec.pids.virtiofsd.slice(0, 16) : [];
    const pids = [rec?.pids.shim, rec?.pids.vmm, ...fsds].filter((p): p is number => typeof p === 'number' && Number.isSafeInteger(p) && p > 1);
    const network = await readNetworkRecord(paths.network);
    const problem = await removeSandboxDir(dir, pids);
    // After the VMM is gone, its taps are free to go.
    await releaseRecordedNetwork(network, (o, msg) => void process.stderr.write(`${msg}: ${JSON.stringify(o)}\n`));
    if (problem) throw new Error(problem);
    reclaimStaleJailIds();
  }
  return DeleteResponse.encode({ pid: 0, exitStatus: 137, exitedAt: timestampFromDate(new Date()) });
}
