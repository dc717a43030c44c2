/** The CLI sandbox's and the pod VM's lifecycles: every edge of state x event, legal or refused. */
import { describe, expect, it } from 'vitest';
import type { AgentClient } from '../../src/agent/host/client.js';
import { transition } from '../../src/common/lifecycle.js';
import type { OciSpec } from '../../src/common/oci-spec.js';
import { podVmLifecycle, type AgentConnection, type PodVmEvent, type PodVmState } from '../../src/sandbox/pod-vm-state.js';
import { endRecord, sandboxLifecycle, type Exit, type Failure, type SandboxEvent, type SandboxLifecycleState } from '../../src/sandbox/sandbox-state.js';
import { checkLifecycle } from '../agent/lifecycle-table.js';

const agent = { name: 'agent' } as unknown as AgentClient;
const spec = { process: { args: ['sh'] } } as unknown as OciSpec;
const exit: Exit = { exitCode: 3, oomKilled: false, waited: { exitStatus: 3, signal: 0, oomKilled: false } };
const failure: Failure = { reason: 'the VM stopped unexpectedly: QEMU killed by SIGKILL', kind: 'internal' };

const sandboxStates: Record<SandboxLifecycleState['status'], SandboxLifecycleState> = {
  booting: { status: 'booting' },
  created: { status: 'created', agent, spec },
  starting: { status: 'starting', agent, spec },
  running: { status: 'running', agent, spec },
  stopping: { status: 'stopping', agent, spec },
  exiting: { status: 'exiting', exit },
  failing: { status: 'failing', failure },
  exited: { status: 'exited', exit },
  failed: { status: 'failed', failure },
};

const sandboxEvents: Record<SandboxEvent['type'], SandboxEvent> = {
  booted: { type: 'booted', agent, spec },
  start: { type: 'start' },
  started: { type: 'started' },
  failed: { type: 'failed' },
  stop: { type: 'stop' },
  exit: { type: 'exit', waited: { exitStatus: 143, signal: 0, oomKilled: true } },
  death: { type: 'death', reason: 'virtiofsd for the rootfs exited (code 1)', kind: 'unavailable' },
  teardown: { type: 'teardown', exit: { exitCode: 137, error: 'the guest did not confirm the stop' } },
  torndown: { type: 'torndown' },
};

const LIVE_ENDS = { death: 'failing', teardown: 'exiting' } as const;
const LATE = { booted: 'exiting', started: 'exiting', failed: 'exiting' } as const;

describe('sandbox lifecycle', () => {
  it('takes exactly the legal edges and refuses every other one', () => {
    const { legal, illegal } = checkLifecycle(sandboxLifecycle, sandboxStates, sandboxEvents, {
      booting: { booted: 'created', ...LIVE_ENDS },
      created: { start: 'starting', ...LIVE_ENDS },
      starting: { started: 'running', failed: 'created', stop: 'stopping', ...LIVE_ENDS },
      running: { stop: 'stopping', exit: 'exiting', ...LIVE_ENDS },
      stopping: { started: 'stopping', failed: 'stopping', stop: 'stopping', exit: 'exiting', ...LIVE_ENDS },
      exiting: { ...LATE, torndown: 'exited' },
      failing: { booted: 'failing', started: 'failing', failed: 'failing', torndown: 'failed' },
      exited: { booted: 'exited', started: 'exited', failed: 'exited' },
      failed: { booted: 'failed', started: 'failed', failed: 'failed' },
    });
    expect([legal, legal + illegal]).toEqual([35, 9 * 9]);
  });

  it('keeps the guest only while the container lives, and the end through late completions', () => {
    let s = transition(sandboxLifecycle, sandboxStates.booting, sandboxEvents.booted);
    expect(s).toEqual({ status: 'created', agent, spec });
    s = transition(sandboxLifecycle, transition(sandboxLifecycle, s, sandboxEvents.start), sandboxEvents.failed);
    expect(s).toEqual({ status: 'created', agent, spec });
    // The VM died while the guest was asked to start: the start's answer leaves the death in place.
    s = transition(sandboxLifecycle, transition(sandboxLifecycle, s, sandboxEvents.start), sandboxEvents.death);
    expect(s).toEqual({ status: 'failing', failure: { reason: 'virtiofsd for the rootfs exited (code 1)', kind: 'unavailable' } });
    expect(transition(sandboxLifecycle, s, sandboxEvents.started)).toBe(s);
    expect(transition(sandboxLifecycle, s, sandboxEvents.torndown)).toEqual({ status: 'failed', failure: { reason: 'virtiofsd for the rootfs exited (code 1)', kind: 'unavailable' } });
    expect(() => transition(sandboxLifecycle, s, sandboxEvents.exit, 'abc')).toThrow('sandbox abc is failing, not running or stopping: cannot exit');
  });

  it('records each end in state.json words', () => {
    const exitedBy = (e: SandboxEvent) => endRecord(transition(sandboxLifecycle, sandboxStates.running, e));
    expect(exitedBy(sandboxEvents.exit)).toEqual({ status: 'exited', exitCode: 143, oomKilled: true });
    expect(exitedBy(sandboxEvents.teardown)).toEqual({ status: 'exited', exitCode: 137, error: 'the guest did not confirm the stop' });
    expect(exitedBy(sandboxEvents.death)).toEqual({ status: 'failed', error: 'virtiofsd for the rootfs exited (code 1)', errorKind: 'unavailable' });
    expect(endRecord(sandboxStates.failed)).toEqual({ status: 'failed', error: failure.reason, errorKind: 'internal' });
    expect(endRecord(sandboxStates.running)).toEqual({});
  });
});

const conn = { agent, details: { kernelRelease: '6.1.0', cpus: 2 } } as unknown as AgentConnection;

const podStates: Record<PodVmState['status'], PodVmState> = {
  booting: { status: 'booting' },
  ready: { status: 'ready', conn },
  stopping: { status: 'stopping', conn },
  dead: { status: 'dead', reason: 'the VM stopped unexpectedly: the guest kernel panicked', conn },
};

const podEvents: Record<PodVmEvent['type'], PodVmEvent> = {
  connected: { type: 'connected', conn },
  death: { type: 'death', reason: 'the VM stopped unexpectedly: QEMU killed by SIGKILL' },
  stop: { type: 'stop' },
};

describe('pod VM lifecycle', () => {
  it('takes exactly the legal edges and refuses every other one', () => {
    const { legal, illegal } = checkLifecycle(podVmLifecycle, podStates, podEvents, {
      booting: { connected: 'ready', death: 'dead', stop: 'stopping' },
      ready: { death: 'dead', stop: 'stopping' },
      stopping: { connected: 'stopping' },
      dead: { connected: 'dead', stop: 'dead' },
    });
    expect([legal, legal + illegal]).toEqual([8, 4 * 3]);
  });

  it('keeps the death and its reason over a late connection and a stop, and the connection for closing', () => {
    const dead = transition(podVmLifecycle, podStates.booting, podEvents.death);
    expect(dead).toEqual({ status: 'dead', reason: 'the VM stopped unexpectedly: QEMU killed by SIGKILL' });
    expect(transition(podVmLifecycle, dead, podEvents.connected)).toBe(dead);
    expect(transition(podVmLifecycle, dead, podEvents.stop)).toBe(dead);
    expect(transition(podVmLifecycle, podStates.ready, podEvents.death)).toEqual({ status: 'dead', reason: 'the VM stopped unexpectedly: QEMU killed by SIGKILL', conn });
    expect(transition(podVmLifecycle, podStates.ready, podEvents.stop)).toEqual({ status: 'stopping', conn });
    expect(() => transition(podVmLifecycle, podStates.stopping, podEvents.death)).toThrow('pod VM is stopping, not booting or ready: cannot death');
  });
});
