/**
 * What a CRI test file sets up and tears down around its pods: a run directory of its own (VRUN_RUN, so
 * "nothing left behind" is checkable), a real containerd with the CRI plugin, and at the end the pod still
 * up after a failure (CRI's stop tears down its CNI network namespace and veth), then every process and
 * mount that names the run directory.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { killAndUnmount } from '../sandbox/leftovers.js';
import { startCriEnv, type CriEnv } from './cri-fixture.js';

export interface CriTestRun {
  readonly env: CriEnv;
  readonly runDir: string;
  /** The pod the running test made; afterAll removes it if the test could not. */
  podId: string;
  /** Stops and removes the test's current pod, also after a failed assertion, so the next test starts clean. */
  endPod(): Promise<void>;
}

export function useCriTestRun(prefix: string): CriTestRun {
  const savedRun = process.env.VRUN_RUN;
  const state: { env?: CriEnv; runDir?: string; podId: string } = { podId: '' };
  beforeAll(async () => {
    state.runDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    process.env.VRUN_RUN = state.runDir;
    state.env = await startCriEnv();
  });
  afterAll(async () => {
    if (state.podId && state.env) {
      await state.env.call('StopPodSandbox', { podSandboxId: state.podId }, 120_000).catch(() => undefined);
      await state.env.call('RemovePodSandbox', { podSandboxId: state.podId }, 120_000).catch(() => undefined);
    }
    await state.env?.stop();
    if (state.runDir) {
      killAndUnmount(state.runDir);
      fs.rmSync(state.runDir, { recursive: true, force: true });
    }
    if (savedRun === undefined) delete process.env.VRUN_RUN;
    else process.env.VRUN_RUN = savedRun;
  });
  return {
    get env() {
      if (!state.env) throw new Error('the CRI environment is not started yet');
      return state.env;
    },
    get runDir() {
      if (!state.runDir) throw new Error('the CRI run directory is not made yet');
      return state.runDir;
    },
    get podId() {
      return state.podId;
    },
    set podId(id: string) {
      state.podId = id;
    },
    async endPod() {
      const id = state.podId;
      if (!id || !state.env) return;
      state.podId = '';
      await state.env.call('StopPodSandbox', { podSandboxId: id });
      await state.env.call('RemovePodSandbox', { podSandboxId: id });
    },
  };
}
