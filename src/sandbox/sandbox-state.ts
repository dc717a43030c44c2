/**
 * The lifecycle of a CLI sandbox (one container in its own pod VM). The agent client and the container's spec
 * exist only while the container does in a live guest. The start passes through an in-flight state, so an end
 * that comes while the guest is asked to start (the VM dies, a stop's deadline pulls the VM) lands on a state
 * that knows a start is pending: its completion then leaves the ending sandbox as it is, and never records it
 * as running. A death wins over everything still live, a stop included.
 */
import type { AgentClient } from '../agent/host/client.js';
import type { WaitResult } from '../agent/protocol/process.js';
import type { ErrorKind } from '../common/errors.js';
import type { Lifecycle } from '../common/lifecycle.js';
import type { OciSpec } from '../common/oci-spec.js';
import type { SandboxState } from './state.js';

/** The created container in the guest: how to reach it, and the spec an exec starts from. */
export interface Guest {
  readonly agent: AgentClient;
  readonly spec: OciSpec;
}

/** How the container ended: the exit the guest reported (`waited`), or one the host imposed (137, `error` says why). */
export interface Exit {
  readonly exitCode: number;
  readonly oomKilled?: boolean;
  readonly error?: string;
  readonly waited?: WaitResult;
}

export interface Failure {
  readonly reason: string;
  readonly kind: ErrorKind;
}

export type SandboxLifecycleState =
  /** The rootfs, the VM and the container are being made. */
  | { readonly status: 'booting' }
  | ({ readonly status: 'created' } & Guest)
  | ({ readonly status: 'starting' } & Guest)
  | ({ readonly status: 'running' } & Guest)
  /** Signalled to stop; waits for the exit, which a caller's deadline may replace by a teardown. */
  | ({ readonly status: 'stopping' } & Guest)
  /** The pod is being torn down after the end; exited or failed once it is. */
  | { readonly status: 'exiting'; readonly exit: Exit }
  | { readonly status: 'failing'; readonly failure: Failure }
  | { readonly status: 'exited'; readonly exit: Exit }
  | { readonly status: 'failed'; readonly failure: Failure };

export type SandboxEvent =
  /** The container was created in the guest. */
  | ({ readonly type: 'booted' } & Guest)
  | { readonly type: 'start' }
  | { readonly type: 'started' }
  /** The guest refused the start: the container is still only created. */
  | { readonly type: 'failed' }
  | { readonly type: 'stop' }
  | { readonly type: 'exit'; readonly waited: WaitResult }
  | { readonly type: 'death'; readonly reason: string; readonly kind: ErrorKind }
  /** Torn down on request: a stop before the start, or a stop the guest did not confirm in time. */
  | { readonly type: 'teardown'; readonly exit: Exit }
  /** The VM, virtiofsd, mounts and rootfs are gone. */
  | { readonly type: 'torndown' };

type Live = Extract<SandboxLifecycleState, { status: 'booting' | 'created' | 'starting' | 'running' | 'stopping' }>;

const unchanged = <S>(s: S): S => s;
const guestOf = (s: Guest): Guest => ({ agent: s.agent, spec: s.spec });
const failing = (_: Live, e: { reason: string; kind: ErrorKind }): SandboxLifecycleState => ({ status: 'failing', failure: { reason: e.reason, kind: e.kind } });
const tornDown = (_: Live, e: { exit: Exit }): SandboxLifecycleState => ({ status: 'exiting', exit: e.exit });
const exited = (_: Live, e: { waited: WaitResult }): SandboxLifecycleState => ({ status: 'exiting', exit: { exitCode: e.waited.exitStatus, oomKilled: e.waited.oomKilled, waited: e.waited } });

export const sandboxLifecycle: Lifecycle<SandboxLifecycleState, SandboxEvent> = {
  name: 'sandbox',
  edges: {
    booting: { booted: (_, e) => ({ status: 'created', ...guestOf(e) }), death: failing, teardown: tornDown },
    created: { start: (s) => ({ status: 'starting', ...guestOf(s) }), death: failing, teardown: tornDown },
    starting: {
      started: (s) => ({ status: 'running', ...guestOf(s) }),
      failed: (s) => ({ status: 'created', ...guestOf(s) }),
      stop: (s) => ({ status: 'stopping', ...guestOf(s) }),
      death: failing,
      teardown: tornDown,
    },
    running: { stop: (s) => ({ status: 'stopping', ...guestOf(s) }), exit: exited, death: failing, teardown: tornDown },
    // A stop that came during the start waits on; a second stop signals again.
    stopping: { started: unchanged, failed: unchanged, stop: unchanged, exit: exited, death: failing, teardown: tornDown },
    // The end won the race against the boot or start in flight: their completion changes nothing.
    exiting: { booted: unchanged, started: unchanged, failed: unchanged, torndown: (s) => ({ status: 'exited', exit: s.exit }) },
    failing: { booted: unchanged, started: unchanged, failed: unchanged, torndown: (s) => ({ status: 'failed', failure: s.failure }) },
    exited: { booted: unchanged, started: unchanged, failed: unchanged },
    failed: { booted: unchanged, started: unchanged, failed: unchanged },
  },
};

/** The container exists in a live guest: its agent can be asked. */
export function guestIn(s: SandboxLifecycleState): Guest | undefined {
  return 'agent' in s ? s : undefined;
}

/** What state.json records of an end. */
export function endRecord(s: SandboxLifecycleState): Partial<SandboxState> {
  if (s.status === 'failing' || s.status === 'failed') return { status: 'failed', error: s.failure.reason, errorKind: s.failure.kind };
  if (s.status !== 'exiting' && s.status !== 'exited') return {};
  const { exitCode, oomKilled, error } = s.exit;
  return { status: 'exited', exitCode, ...(oomKilled !== undefined ? { oomKilled } : {}), ...(error !== undefined ? { error } : {}) };
}
