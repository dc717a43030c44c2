/**
 * The CLI sandbox against a pod that ends while an operation is in flight, with stand-ins for the image store
 * and the VM (the share is real): the end wins, and state.json says how it ended, never 'running'.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentClient } from '../../src/agent/host/client.js';
import type { WaitResult } from '../../src/agent/protocol/process.js';
import { VrunError } from '../../src/common/errors.js';
import { fileLogger } from '../../src/common/log.js';
import { Sandbox, type SandboxParts, type SandboxPod } from '../../src/sandbox/sandbox.js';
import { ensureRunDir, hostBootId, newSandboxId, readState, sandboxPaths, writeState, type SandboxState } from '../../src/sandbox/state.js';
import { killAndUnmount, mountsUnder } from './leftovers.js';

const DEATH = 'the VM stopped unexpectedly: QEMU killed by SIGKILL';
const log = fileLogger({ write: () => true }, { level: 'silent' });

function deferred<T>() {
  let resolve: (v: T) => void = () => undefined;
  let reject: (e: Error) => void = () => undefined;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** Resolves once `cond` holds (polled: the sandbox's steps are a few awaits apart). */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(cond()).toBe(true);
}

/** A pod that boots when told to, and an agent whose start and exit come when told to. */
function standIn() {
  const calls: string[] = [];
  const outputs: PassThrough[] = [];
  const gates = { launch: deferred<void>(), agentReady: deferred<void>(), start: deferred<void>(), exit: deferred<WaitResult>() };
  let up = true;
  let hooks: Parameters<SandboxParts['bootPod']>[2] | undefined;
  const agent = {
    mountShare: async () => '/run/vrun-share',
    setHostname: async () => void calls.push('hostname'),
    setHosts: async () => undefined,
    setDns: async () => undefined,
    createContainer: async () => void calls.push('create'),
    readOutput: () => {
      const s = new PassThrough();
      outputs.push(s);
      return s;
    },
    waitProcess: () => gates.exit.promise,
    closeStdin: async () => undefined,
    startContainer: () => (calls.push('start'), gates.start.promise),
    signalProcess: async (_: unknown, signal: string) => void calls.push(signal),
    close: () => void calls.push('agent closed'),
  } as unknown as AgentClient;
  const pod: SandboxPod = {
    agent,
    details: { kernelRelease: '6.1.0', cpus: 2, memTotalBytes: 1 << 30 } as SandboxPod['details'],
    backend: 'stand-in',
    pids: { virtiofsd: [] },
    get up() {
      return up;
    },
    logVmmState: async () => false,
    reportLoss: async () => undefined,
    stop: async () => {
      up = false;
      calls.push('pod stopped');
    },
  };
  const parts: SandboxParts = {
    prepareRootfs: async (_image, _id, target) => ({
      config: { Cmd: ['sh'] },
      hostPath: target,
      guestRelPath: 'rootfs',
      release: async () => void calls.push('rootfs released'),
    }),
    // As PodVm.boot: a launch the caller refuses is stopped, and a death fails the boot with its reason.
    bootPod: async (_spec, _log, h) => {
      hooks = h;
      await gates.launch.promise;
      try {
        await h.onLaunched(pod);
      } catch (err) {
        await pod.stop({ graceful: false });
        throw err;
      }
      await gates.agentReady.promise;
      return pod;
    },
  };
  return {
    calls,
    gates,
    parts,
    /** The VM dies on its own, as PodVm reports it. */
    die(reason = DEATH) {
      up = false;
      hooks?.onDeath(reason);
      gates.agentReady.reject(new VrunError(reason));
    },
    /** The container exits; its output streams end first, as the agent's do. */
    exit(exitStatus: number) {
      for (const o of outputs) o.end();
      gates.exit.resolve({ exitStatus, signal: 0, oomKilled: false });
    },
    launched: () => hooks !== undefined,
  };
}

describe('CLI sandbox lifecycle races (stand-in pod)', () => {
  let runDir: string;
  let s: ReturnType<typeof standIn>;
  let sandbox: Sandbox;

  beforeEach(async () => {
    runDir = mkdtempSync(path.join(os.tmpdir(), 'vrun-races-'));
    await ensureRunDir(runDir);
    const id = newSandboxId();
    mkdirSync(path.join(runDir, id), { mode: 0o700 });
    const state: SandboxState = {
      version: 1, id, name: 'races', image: 'busybox', createdAt: new Date().toISOString(), hostBootId: hostBootId(), status: 'creating',
      config: { image: 'busybox', args: ['sh'], env: [], tty: false, interactive: false, detach: true, autoRemove: false, readOnly: false, volumes: [], vmm: 'auto', debug: false },
      pids: {},
    };
    await writeState(state, runDir);
    s = standIn();
    sandbox = new Sandbox(state, sandboxPaths(id, runDir), log, s.parts);
  });

  afterEach(() => {
    killAndUnmount(runDir);
    rmSync(runDir, { recursive: true, force: true });
  });

  const onDisk = async () => readState(sandbox.id, runDir);

  async function bootAndStart(): Promise<void> {
    s.gates.launch.resolve();
    s.gates.agentReady.resolve();
    s.gates.start.resolve();
    await sandbox.boot();
    await sandbox.start({ keepStdin: false });
    expect(sandbox.lifecycle.status).toBe('running');
    expect((await onDisk())?.status).toBe('running');
  }

  /** Torn down completely: the pod and the rootfs let go, the share unmounted, and the end on disk. */
  async function expectEnded(record: Partial<SandboxState>): Promise<void> {
    await sandbox.whenDone();
    expect(s.calls).toContain('pod stopped');
    expect(s.calls).toContain('rootfs released');
    expect(mountsUnder(runDir)).toEqual([]);
    expect(await onDisk()).toMatchObject({ ...record, finishedAt: expect.any(String) });
  }

  it('the VM dies while the boot waits for the agent: failed with the death\'s reason', async () => {
    s.gates.launch.resolve();
    const booting = sandbox.boot();
    await until(() => (sandbox.current.pids.sandbox ?? 0) > 0 && sandbox.current.backend === 'stand-in');
    expect(sandbox.lifecycle.status).toBe('booting');
    s.die();
    await booting;
    await expect(sandbox.ready).rejects.toThrow(DEATH);
    await sandbox.whenDone();
    expect(sandbox.lifecycle).toEqual({ status: 'failed', failure: { reason: DEATH, kind: 'internal' } });
    expect(sandbox.failed?.reason).toBe(DEATH);
    await expectEnded({ status: 'failed', error: DEATH, errorKind: 'internal' });
    expect(s.calls).not.toContain('create');
  });

  it('the VM dies while the start is in flight: the start\'s late answer does not make it running', async () => {
    s.gates.launch.resolve();
    s.gates.agentReady.resolve();
    await sandbox.boot();
    const starting = sandbox.start({ keepStdin: false });
    await until(() => s.calls.includes('start'));
    expect(sandbox.lifecycle.status).toBe('starting');
    s.die();
    await expectEnded({ status: 'failed', error: DEATH });
    // The guest's answer to the start arrives after the teardown.
    s.gates.start.resolve();
    await starting;
    s.exit(0);
    await new Promise((r) => setTimeout(r, 50));
    expect(sandbox.lifecycle.status).toBe('failed');
    expect(sandbox.exit).toBeUndefined();
    expect(await onDisk()).toMatchObject({ status: 'failed', error: DEATH });
    expect((await onDisk())?.startedAt).toBeUndefined();
  });

  it('the VM dies while a stop is in flight: failed with the death\'s reason, at once, and the late exit changes nothing', async () => {
    await bootAndStart();
    const t0 = Date.now();
    const stopping = sandbox.stop(30);
    expect(sandbox.lifecycle.status).toBe('stopping');
    await until(() => s.calls.includes('SIGTERM'));
    s.die();
    await stopping;
    expect(Date.now() - t0).toBeLessThan(10_000);
    await expectEnded({ status: 'failed', error: DEATH });
    s.exit(143);
    await new Promise((r) => setTimeout(r, 50));
    expect(sandbox.lifecycle.status).toBe('failed');
    expect(sandbox.exit).toBeUndefined();
    expect((await onDisk())?.status).toBe('failed');
    await expect(sandbox.start({ keepStdin: false })).rejects.toThrow(/sandbox [0-9a-f]{12} is failed, not created: cannot start/);
  });

  it('a stop before the VM launched ends the sandbox exited 137, and the VM launched afterwards is stopped', async () => {
    const booting = sandbox.boot();
    await until(() => s.launched());
    await sandbox.stop(5);
    await expect(sandbox.ready).rejects.toThrow('the sandbox was stopped before its container was created');
    expect(sandbox.lifecycle.status).toBe('exited');
    expect(s.calls).not.toContain('pod stopped');
    s.gates.launch.resolve();
    await booting;
    expect(s.calls).toContain('pod stopped');
    expect(sandbox.lifecycle.status).toBe('exited');
    expect(await onDisk()).toMatchObject({ status: 'exited', exitCode: 137 });
    expect((await onDisk())?.backend).toBeUndefined();
  });

  it('a stop whose SIGTERM ends the container: exited with its status', async () => {
    await bootAndStart();
    const stopping = sandbox.stop(30);
    await until(() => s.calls.includes('SIGTERM'));
    s.exit(143);
    await stopping;
    expect(sandbox.exit).toEqual({ exitStatus: 143, signal: 0, oomKilled: false });
    await expectEnded({ status: 'exited', exitCode: 143, oomKilled: false });
    // The end came first: a death reported during the teardown or after it is not one.
    s.die();
    await sandbox.fail('late');
    expect(sandbox.lifecycle.status).toBe('exited');
  });
});
