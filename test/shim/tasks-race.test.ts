/**
 * The shim's Task service against a pod without a VM: a stand-in agent whose calls the test completes by
 * hand, so an exit can be delivered while a pause (or a start) is still waiting for the guest.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentClient } from '../../src/agent/host/client.js';
import type { WaitResult } from '../../src/agent/protocol/process.js';
import type { GuestShare } from '../../src/sandbox/guest-share.js';
import type { EventPublisher } from '../../src/shim/events.js';
import { ShimPod, type Pod, type PodHooks } from '../../src/shim/pod.js';
import type { PodPaths } from '../../src/shim/pod-paths.js';
import type { CreateTaskRequest } from '../../src/shim/protocol/task-messages.js';
import { TaskStatus } from '../../src/shim/protocol/types.js';
import { VrunTasks } from '../../src/shim/tasks.js';

interface Pending<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  called: Promise<void>;
}

/** A call the test answers: `called` settles when the shim made it, `resolve` answers it. */
function pending<T>(): Pending<T> & { call(): Promise<T> } {
  let resolve!: (v: T) => void;
  let markCalled!: () => void;
  const promise = new Promise<T>((r) => (resolve = r));
  const called = new Promise<void>((r) => (markCalled = r));
  return { promise, resolve, called, call: () => (markCalled(), promise) };
}

function fakeAgent() {
  const calls = { wait: pending<WaitResult>(), start: pending<void>(), pause: pending<void>() };
  const agent = {
    createContainer: async () => 42,
    closeStdin: async () => undefined,
    waitProcess: () => calls.wait.call(),
    startContainer: () => calls.start.call(),
    pauseContainer: () => calls.pause.call(),
    removeContainer: async () => undefined,
  } as unknown as AgentClient;
  return { agent, calls };
}

class FakePod extends ShimPod {
  constructor(hooks: PodHooks, private readonly fake: AgentClient) {
    super({} as PodPaths, pino({ level: 'silent' }), hooks);
  }
  protected override async createShare(): Promise<GuestShare> {
    return { bind: async () => undefined, remove: async () => undefined, destroy: async () => undefined } as unknown as GuestShare;
  }
  protected override async launch(): Promise<Pod> {
    return { vm: { agent: this.fake, stop: async () => undefined }, guestShare: '/run/vrun/shared/pod' };
  }
}

describe('shim tasks: an exit while a guest call is in flight', () => {
  let bundle: string;
  beforeEach(async () => {
    bundle = await mkdtemp(path.join(os.tmpdir(), 'vrun-shim-race-'));
    await writeFile(path.join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', process: { args: ['sleep', '1000'], cwd: '/', env: [] }, root: { path: 'rootfs' }, linux: { namespaces: [{ type: 'pid' }] } }));
  });
  afterEach(async () => {
    await rm(bundle, { recursive: true, force: true });
  });

  async function createdTask() {
    const { agent, calls } = fakeAgent();
    const events: string[] = [];
    const publisher = { publish: async (kind: string) => void events.push(kind) } as unknown as EventPublisher;
    const tasks = new VrunTasks({} as PodPaths, publisher, pino({ level: 'silent' }), async () => undefined, (hooks) => new FakePod(hooks, agent));
    const req = { id: 'c1', bundle, rootfs: [], terminal: false, stdin: '', stdout: '', stderr: '', checkpoint: '', parentCheckpoint: '' } as unknown as CreateTaskRequest;
    expect(await tasks.create(req)).toEqual({ pid: 42 });
    return { tasks, calls, events };
  }

  it('a pause that completes after the exit leaves the task stopped with its exit status', async () => {
    const { tasks, calls, events } = await createdTask();
    calls.start.resolve();
    await tasks.start({ id: 'c1', execId: '' });
    const paused = tasks.pause({ id: 'c1' });
    await calls.pause.called;
    calls.wait.resolve({ exitStatus: 137, signal: 9, oomKilled: false });
    expect(await tasks.wait({ id: 'c1', execId: '' })).toMatchObject({ exitStatus: 137 });
    calls.pause.resolve();
    await paused;
    expect(await tasks.state({ id: 'c1', execId: '' })).toMatchObject({ status: TaskStatus.STOPPED, exitStatus: 137, pid: 42 });
    expect(events).toEqual(['TaskCreate', 'TaskStart', 'TaskExit']);
    await expect(tasks.pause({ id: 'c1' })).rejects.toThrow('task c1 is stopped, not running: cannot pause');
    expect(await tasks.delete({ id: 'c1', execId: '' })).toMatchObject({ exitStatus: 137 });
  });

  it('a start that completes after the exit leaves the task stopped, its exit event after the start event', async () => {
    const { tasks, calls, events } = await createdTask();
    const started = tasks.start({ id: 'c1', execId: '' });
    await calls.start.called;
    expect((await tasks.state({ id: 'c1', execId: '' })).status).toBe(TaskStatus.CREATED);
    calls.wait.resolve({ exitStatus: 0, signal: 0, oomKilled: false });
    await tasks.wait({ id: 'c1', execId: '' });
    calls.start.resolve();
    expect(await started).toEqual({ pid: 42 });
    expect(await tasks.state({ id: 'c1', execId: '' })).toMatchObject({ status: TaskStatus.STOPPED, exitStatus: 0 });
    await new Promise((r) => setImmediate(r));
    expect(events).toEqual(['TaskCreate', 'TaskStart', 'TaskExit']);
  });
});
