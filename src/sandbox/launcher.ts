import { spawn } from 'node:child_process';
import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import { nodeChildEnv } from '../common/node-child-env.js';
import { projectRoot, vrunRunDir } from '../common/paths.js';
import { removeSandboxDir } from './cleanup.js';
import { defaultName, releaseName, reserveName } from './names.js';
import type { RunConfig } from './run-config.js';
import { type SandboxPaths, ensureRunDir, hostBootId, newSandboxId, sandboxPaths, writeState } from './state.js';

/**
 * Creates a sandbox's state directory and starts its sandbox process, detached so it outlives the CLI.
 * If anything fails before the process runs, the name and the directory are released again.
 */
export interface LaunchedSandbox {
  id: string;
  name: string;
  paths: SandboxPaths;
  pid: number;
}

/** The sandbox process's entry: daemon.ts, bundled (scripts/bundle.mjs) and loaded with a code cache. */
export function daemonScript(): string {
  return path.join(projectRoot(), 'bin', 'vrun-sandbox.js');
}

export async function launchSandbox(config: RunConfig, name: string | undefined, runDir = vrunRunDir()): Promise<LaunchedSandbox> {
  await ensureRunDir(runDir);
  const id = newSandboxId();
  const finalName = name ?? defaultName(id);
  await reserveName(finalName, id, runDir);
  const paths = sandboxPaths(id, runDir);
  try {
    await mkdir(paths.dir, { mode: 0o700 });
    await writeState(
      {
        version: 1,
        id,
        name: finalName,
        image: config.image,
        createdAt: new Date().toISOString(),
        hostBootId: hostBootId(),
        status: 'creating',
        config,
        pids: {},
      },
      runDir,
    );
    const log = await open(paths.log, 'a', 0o600);
    const child = spawn(process.execPath, [daemonScript(), paths.dir], {
      detached: true,
      stdio: ['ignore', log.fd, log.fd],
      cwd: '/',
      env: nodeChildEnv(),
    });
    await log.close();
    child.unref();
    if (child.pid === undefined) throw new Error('could not start the sandbox process');
    return { id, name: finalName, paths, pid: child.pid };
  } catch (err) {
    await removeSandboxDir(paths.dir, []);
    await releaseName(finalName, id, runDir);
    throw err;
  }
}
