import { createHash } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VrunError, errorMessage } from '../common/errors.js';
import { vrunRunDir } from '../common/paths.js';

/**
 * Where one pod's shim keeps its state: /run/vrun/shim/<key>, where the key hashes the containerd namespace and
 * the pod's id, so every container of a pod (and the `delete` invocation after a crash) finds the same place.
 * Socket paths stay short: sun_path holds 108 bytes.
 */
export const CRI_SANDBOX_ID = 'io.kubernetes.cri.sandbox-id';

export function shimRunDir(): string {
  return path.join(vrunRunDir(), 'shim');
}

export function podKey(namespace: string, groupId: string): string {
  return createHash('sha256').update(`${namespace}/${groupId}`).digest('hex').slice(0, 20);
}

export function podPaths(dir: string) {
  return {
    dir,
    socket: path.join(dir, 'shim.sock'),
    state: path.join(dir, 'pod.json'),
    /** What the shim made in the pod's network namespace (pod-network.ts). */
    network: path.join(dir, 'network.json'),
    log: path.join(dir, 'shim.log'),
    console: path.join(dir, 'console.log'),
    runDir: path.join(dir, 'vm'),
    agent: path.join(dir, 'vm', 'agent.sock'),
    fsSocket: path.join(dir, 'vm', 'fs.sock'),
  };
}
export type PodPaths = ReturnType<typeof podPaths>;

export function podDirFor(namespace: string, groupId: string): string {
  return path.join(shimRunDir(), podKey(namespace, groupId));
}

/** The pod a container belongs to: its CRI sandbox, or itself when it was not made through CRI. */
export function groupIdOf(id: string, annotations: Record<string, unknown> | undefined): string {
  const sandbox = annotations?.[CRI_SANDBOX_ID];
  return typeof sandbox === 'string' && sandbox !== '' ? sandbox : id;
}

/** What `delete` needs after the serving process died: whose processes to kill. */
export interface PodRecord {
  namespace: string;
  groupId: string;
  pids: { shim?: number; vmm?: number; virtiofsd?: number[] };
  backend?: string;
}

export async function writePodRecord(p: PodPaths, rec: PodRecord): Promise<void> {
  const tmp = `${p.state}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(rec) + '\n', { mode: 0o600 });
  await rename(tmp, p.state);
}

export async function readPodRecord(p: PodPaths): Promise<PodRecord | undefined> {
  let text: string;
  try {
    text = await readFile(p.state, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const v = JSON.parse(text) as Partial<PodRecord>;
    if (typeof v !== 'object' || v === null || typeof v.pids !== 'object' || v.pids === null) throw new Error('unexpected shape');
    return v as PodRecord;
  } catch (err) {
    throw new VrunError(`pod state ${p.state} is corrupt: ${errorMessage(err)}`);
  }
}

/** The bundle's config.json annotations (containerd writes the bundle before it calls the shim). */
export async function readBundleAnnotations(bundle: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path.join(bundle, 'config.json'), 'utf8');
  } catch (err) {
    throw new VrunError(`cannot read the bundle's config.json in ${bundle}: ${errorMessage(err)}`);
  }
  try {
    const spec = JSON.parse(text) as { annotations?: unknown };
    const a = spec.annotations;
    return typeof a === 'object' && a !== null && !Array.isArray(a) ? (a as Record<string, unknown>) : {};
  } catch (err) {
    throw new VrunError(`the bundle's config.json in ${bundle} is not valid JSON: ${errorMessage(err)}`);
  }
}
