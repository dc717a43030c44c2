/** The shim's task and pod lifecycles: every edge of state x event, legal or refused. */
import { describe, expect, it } from 'vitest';
import { transition } from '../../src/common/lifecycle.js';
import { podLifecycle, type PodEvent, type PodState } from '../../src/shim/pod.js';
import { TaskStatus } from '../../src/shim/protocol/types.js';
import { newProc, taskLifecycle, type TaskEvent, type TaskState } from '../../src/shim/task-state.js';
import { checkLifecycle, pauseCycleEvents } from '../agent/lifecycle-table.js';

const at = new Date(0);
const process = { args: ['sh'], cwd: '/', env: [] };

const taskStates: Record<TaskState['status'], TaskState> = {
  creating: { status: 'creating' },
  created: { status: 'created', process },
  starting: { status: 'starting', process },
  running: { status: 'running' },
  pausing: { status: 'pausing' },
  paused: { status: 'paused' },
  resuming: { status: 'resuming' },
  stopped: { status: 'stopped', exitStatus: 3, exitedAt: at },
};

const taskEvents: Record<TaskEvent['type'], TaskEvent> = {
  ...pauseCycleEvents,
  exit: { type: 'exit', exitStatus: 137, exitedAt: at },
};

describe('shim task lifecycle', () => {
  it('takes exactly the legal edges and refuses every other one', () => {
    const { legal, illegal } = checkLifecycle(taskLifecycle, taskStates, taskEvents, {
      creating: { created: 'created', exit: 'stopped' },
      created: { start: 'starting', exit: 'stopped' },
      starting: { started: 'running', failed: 'created', exit: 'stopped' },
      running: { pause: 'pausing', exit: 'stopped' },
      pausing: { paused: 'paused', failed: 'running', exit: 'stopped' },
      paused: { resume: 'resuming', exit: 'stopped' },
      resuming: { resumed: 'running', failed: 'paused', exit: 'stopped' },
      stopped: { started: 'stopped', paused: 'stopped', resumed: 'stopped', failed: 'stopped' },
    });
    expect(legal + illegal).toBe(8 * 9);
  });

  it("keeps an exec's process through a failed start, and the exit through a late completion", () => {
    const starting = transition(taskLifecycle, taskStates.created, taskEvents.start);
    expect(transition(taskLifecycle, starting, taskEvents.failed)).toEqual({ status: 'created', process });
    const stopped = transition(taskLifecycle, transition(taskLifecycle, taskStates.running, taskEvents.pause), taskEvents.exit);
    expect(transition(taskLifecycle, stopped, taskEvents.paused)).toEqual({ status: 'stopped', exitStatus: 137, exitedAt: at });
  });

  it("reports containerd's status and resolves Wait on the exit", async () => {
    const p = newProc('c1', 'e1', { stdin: '', stdout: '', stderr: '', terminal: false }, { status: 'created', process });
    expect([p.status(), p.exitStatus(), p.exitedAt()]).toEqual([TaskStatus.CREATED, 0, undefined]);
    expect(() => p.step(taskEvents.pause)).toThrow('task c1 exec e1 is created, not running: cannot pause');
    p.step(taskEvents.start);
    p.step(taskEvents.started);
    p.step(taskEvents.pause);
    expect(p.status()).toBe(TaskStatus.PAUSING);
    p.step(taskEvents.exit);
    await p.exited;
    expect([p.status(), p.exitStatus(), p.exitedAt()]).toEqual([TaskStatus.STOPPED, 137, at]);
  });
});

const podStates: Record<PodState['status'], PodState> = {
  idle: { status: 'idle' },
  up: { status: 'up' },
  draining: { status: 'draining' },
  lost: { status: 'lost', reason: 'the VM died', draining: false },
  stopping: { status: 'stopping' },
};

const podEvents: Record<PodEvent['type'], PodEvent> = {
  boot: { type: 'boot' },
  drain: { type: 'drain' },
  death: { type: 'death', reason: 'the VM died' },
  stop: { type: 'stop' },
};

describe('shim pod lifecycle', () => {
  it('takes exactly the legal edges and refuses every other one', () => {
    const { legal, illegal } = checkLifecycle(podLifecycle, podStates, podEvents, {
      idle: { boot: 'up', stop: 'stopping' },
      up: { drain: 'draining', death: 'lost', stop: 'stopping' },
      draining: { drain: 'draining', death: 'lost', stop: 'stopping' },
      lost: { drain: 'lost', stop: 'stopping' },
      stopping: { drain: 'stopping' },
    });
    expect(legal + illegal).toBe(5 * 4);
  });

  it('remembers a shutdown asked for before or after the VM was lost', () => {
    expect(transition(podLifecycle, podStates.draining, podEvents.death)).toEqual({ status: 'lost', reason: 'the VM died', draining: true });
    expect(transition(podLifecycle, podStates.up, podEvents.death)).toEqual({ status: 'lost', reason: 'the VM died', draining: false });
    expect(transition(podLifecycle, podStates.lost, podEvents.drain)).toEqual({ status: 'lost', reason: 'the VM died', draining: true });
  });
});
