import { spawn } from 'node:child_process';
import { mkdir, open, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { VrunError, errorMessage } from '../common/errors.js';
import { nodeChildEnv } from '../common/node-child-env.js';
import { processBelongsTo, removeSandboxDir } from '../sandbox/cleanup.js';
import type { ShimFlags } from './flags.js';
import { groupIdOf, podDirFor, podPaths, readBundleAnnotations, readPodRecord, shimRunDir } from './pod-paths.js';

/**
 * containerd's `start`: find or start the pod's serving process and print its address. Containers that
 * carry the CRI sandbox-id annotation share the shim (and so the VM) of their pod; the first one to come
 * creates the pod's directory, which doubles as the lock against a second serving process.
 */
const START_TIMEOUT_MS = 15_000;

function canConnect(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection({ path: p }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function waitForSocket(socket: string, alive: () => boolean): Promise<boolean> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (await canConnect(socket)) return true;
    if (!alive()) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}

function spawnServer(flags: ShimFlags, dir: string, groupId: string, logPath: Promise<number>): Promise<number> {
  return logPath.then((fd) => {
    const script = process.argv[1] ?? '';
    const args = [script, '-namespace', flags.namespace, '-address', flags.address, '-id', groupId, ...(flags.debug ? ['-debug'] : []), 'serve', dir];
    const child = spawn(process.execPath, args, {
      detached: true,
      cwd: dir,
      stdio: ['ignore', fd, fd],
      // Each process's stdin waits in the thread pool for containerd's writer; give it room.
      env: nodeChildEnv(process.env, { UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '64' }),
    });
    child.unref();
    if (child.pid === undefined) throw new VrunError('could not start the shim serving process');
    return child.pid;
  });
}

export async function startShim(flags: ShimFlags): Promise<string> {
  if (flags.namespace === '' || flags.id === '') throw new VrunError('start needs -namespace and -id');
  const bundle = process.cwd();
  const groupId = groupIdOf(flags.id, await readBundleAnnotations(bundle));
  const dir = podDirFor(flags.namespace, groupId);
  const paths = podPaths(dir);
  const address = `unix://${paths.socket}`;
  await mkdir(shimRunDir(), { recursive: true, mode: 0o700 });

  for (let attempt = 0; attempt < 2; attempt++) {
    let created = true;
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      created = false;
    }
    if (created) {
      const fh = open(paths.log, 'a', 0o600);
      const pid = await spawnServer(flags, dir, groupId, fh.then((h) => h.fd));
      await (await fh).close();
      if (!(await waitForSocket(paths.socket, () => processBelongsTo(pid, dir)))) {
        throw new VrunError(`the shim serving process for ${groupId} did not come up; see ${paths.log}`);
      }
    } else if (!(await canConnect(paths.socket))) {
      // Another start may be bringing the pod's shim up right now; else the directory is a dead shim's.
      const rec = await readPodRecord(paths).catch(() => undefined);
      const shimPid = rec?.pids.shim;
      const up = shimPid !== undefined && (await waitForSocket(paths.socket, () => processBelongsTo(shimPid, dir)));
      if (!up) {
        const problem = await removeSandboxDir(dir, [rec?.pids.shim, rec?.pids.vmm, rec?.pids.virtiofsd].filter((p): p is number => typeof p === 'number'));
        if (problem) throw new VrunError(problem);
        continue;
      }
    }
    await writeFile(path.join(bundle, 'address'), address).catch((err: unknown) => {
      throw new VrunError(`cannot write the shim address into the bundle: ${errorMessage(err)}`);
    });
    return address;
  }
  throw new VrunError(`could not start a shim for ${groupId}: its state directory ${dir} keeps reappearing`);
}
