/** The agent's container and process lifecycles: every edge of state x event, legal or refused. */
import { describe, expect, it } from 'vitest';
import {
  containerLifecycle,
  processLifecycle,
  type ContainerEvent,
  type ContainerState,
  type ProcessEvent,
  type ProcessState,
} from '../../src/agent/guest/container-state.js';
import type { WaitResult } from '../../src/agent/protocol/process.js';
import { transition } from '../../src/common/lifecycle.js';
import { checkLifecycle, pauseCycleEvents } from './lifecycle-table.js';

const exit: WaitResult = { exitStatus: 137, signal: 9, oomKilled: false };
const cleanup = Promise.resolve();

const containerStates: Record<ContainerState['status'], ContainerState> = {
  creating: { status: 'creating' },
  created: { status: 'created' },
  starting: { status: 'starting' },
  running: { status: 'running' },
  pausing: { status: 'pausing' },
  paused: { status: 'paused' },
  resuming: { status: 'resuming' },
  stopped: { status: 'stopped', exit: { exitStatus: 3, signal: 0, oomKilled: false } },
  removing: { status: 'removing', cleanup },
};

const containerEvents: Record<ContainerEvent['type'], ContainerEvent> = {
  ...pauseCycleEvents,
  exit: { type: 'exit', exit },
  remove: { type: 'remove', cleanup },
};

describe('agent container lifecycle', () => {
  it('takes exactly the legal edges and refuses every other one', () => {
    const { legal, illegal } = checkLifecycle(containerLifecycle, containerStates, containerEvents, {
      creating: { created: 'created' },
      created: { start: 'starting', exit: 'stopped', remove: 'removing' },
      starting: { started: 'running', failed: 'created', exit: 'stopped' },
      running: { pause: 'pausing', exit: 'stopped', remove: 'removing' },
      pausing: { paused: 'paused', failed: 'running', exit: 'stopped' },
      paused: { resume: 'resuming', exit: 'stopped', remove: 'removing' },
      resuming: { resumed: 'running', failed: 'paused', exit: 'stopped' },
      stopped: { started: 'stopped', paused: 'stopped', resumed: 'stopped', failed: 'stopped', remove: 'removing' },
      removing: { exit: 'removing' },
    });
    expect(legal + illegal).toBe(9 * 10);
  });

  it('keeps the exit when an operation in flight completes after it', () => {
    for (const [request, done] of [['start', 'started'], ['pause', 'paused'], ['resume', 'resumed']] as const) {
      const from = containerStates[request === 'start' ? 'created' : request === 'pause' ? 'running' : 'paused'];
      const inFlight = transition(containerLifecycle, from, containerEvents[request]);
      const stopped = transition(containerLifecycle, inFlight, { type: 'exit', exit });
      expect(transition(containerLifecycle, stopped, containerEvents[done])).toEqual({ status: 'stopped', exit });
      expect(transition(containerLifecycle, stopped, containerEvents.failed)).toEqual({ status: 'stopped', exit });
    }
  });

  it('names the container, its state and the event when it refuses', () => {
    expect(() => transition(containerLifecycle, containerStates.stopped, containerEvents.start, 'c1')).toThrow('container c1 is stopped, not created: cannot start');
    expect(() => transition(containerLifecycle, containerStates.paused, containerEvents.pause, 'c1')).toThrow('container c1 is paused, not running: cannot pause');
  });
});

const processStates: Record<ProcessState['status'], ProcessState> = {
  starting: { status: 'starting' },
  running: { status: 'running', pid: 42 },
  exited: { status: 'exited', pid: 42, exit },
};

const processEvents: Record<ProcessEvent['type'], ProcessEvent> = {
  started: { type: 'started', pid: 42 },
  exit: { type: 'exit', exit },
};

describe('agent process lifecycle', () => {
  it('takes exactly the legal edges and refuses every other one', () => {
    const { legal, illegal } = checkLifecycle(processLifecycle, processStates, processEvents, {
      starting: { started: 'running' },
      running: { exit: 'exited' },
      exited: {},
    });
    expect([legal, illegal]).toEqual([2, 4]);
  });

  it('keeps the pid through the exit', () => {
    const running = transition(processLifecycle, processStates.starting, { type: 'started', pid: 7 });
    expect(transition(processLifecycle, running, { type: 'exit', exit })).toEqual({ status: 'exited', pid: 7, exit });
  });
});
