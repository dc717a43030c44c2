/**
 * The lifecycle of a pod VM (PodVm) from its launch on. The agent connection exists only once the guest
 * answered, and the death's reason only once the VM died. A death wins over a boot still reaching the agent:
 * the connection that completes afterwards leaves the pod dead. A VM that goes away while it is being stopped
 * went as asked, which is not a death.
 */
import type { AgentClient, GuestDetails } from '../agent/host/client.js';
import type { Lifecycle } from '../common/lifecycle.js';

/** The connection to the guest agent, and what its first call told about the guest. */
export interface AgentConnection {
  readonly agent: AgentClient;
  readonly details: GuestDetails;
}

export type PodVmState =
  /** The VMM and virtiofsd run; the guest boots and its agent is being reached. */
  | { readonly status: 'booting' }
  | { readonly status: 'ready'; readonly conn: AgentConnection }
  /** Asked to stop: its processes are being ended. `conn` is still to be closed. */
  | { readonly status: 'stopping'; readonly conn?: AgentConnection }
  /** The VM, a virtiofsd or a call into the guest was lost on its own. `conn` is still to be closed. */
  | { readonly status: 'dead'; readonly reason: string; readonly conn?: AgentConnection };

export type PodVmEvent =
  /** The agent answered its first call. */
  | { readonly type: 'connected'; readonly conn: AgentConnection }
  | { readonly type: 'death'; readonly reason: string }
  | { readonly type: 'stop' };

const unchanged = <S>(s: S): S => s;

export const podVmLifecycle: Lifecycle<PodVmState, PodVmEvent> = {
  name: 'pod VM',
  edges: {
    booting: { connected: (_, e) => ({ status: 'ready', conn: e.conn }), death: (_, e) => ({ status: 'dead', reason: e.reason }), stop: () => ({ status: 'stopping' }) },
    ready: { death: (s, e) => ({ status: 'dead', reason: e.reason, conn: s.conn }), stop: (s) => ({ status: 'stopping', conn: s.conn }) },
    // The boot's connection came after the stop or the death: it is closed unused, the state stays.
    stopping: { connected: unchanged },
    // A dead pod is still stopped (its processes and sockets released), and stays dead for its reason.
    dead: { connected: unchanged, stop: unchanged },
  },
};
