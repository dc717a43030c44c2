/**
 * Lifecycles as explicit state machines: a discriminated union of states (`status`), events (`type`), and a
 * table of the edges between them. Every change of a lifecycle goes through transition(), so an edge the
 * table lacks is refused where it is attempted, instead of a late write (after an `await`) silently
 * overwriting a state another path set in the meantime, such as an exit.
 *
 * The tables follow containerd's pkg/process/*_state.go and Kata's ContainerStatus::transition: an exit is
 * accepted in every live state, and the completion of an operation that was in flight when the exit came
 * (a pause, a start) leaves the stopped state as it is.
 */
import { VrunError } from './errors.js';

export interface State {
  readonly status: string;
}

export interface Event {
  readonly type: string;
}

/** For each state, the events it accepts and the state each one leads to. */
export type Edges<S extends State, E extends Event> = {
  readonly [K in S['status']]: {
    readonly [T in E['type']]?: (from: Extract<S, { status: K }>, event: Extract<E, { type: T }>) => S;
  };
};

export interface Lifecycle<S extends State, E extends Event> {
  /** What the lifecycle is of, for messages: "container", "task". */
  readonly name: string;
  readonly edges: Edges<S, E>;
}

/** An event the lifecycle's current state does not accept. */
export class IllegalTransitionError extends VrunError {
  constructor(
    readonly lifecycle: string,
    readonly from: string,
    readonly event: string,
    /** The states that would have accepted the event. */
    readonly acceptedIn: readonly string[],
    subject = '',
  ) {
    const who = subject ? `${lifecycle} ${subject}` : lifecycle;
    super(`${who} is ${from}${acceptedIn.length > 0 ? `, not ${acceptedIn.join(' or ')}` : ''}: cannot ${event}`, { kind: 'precondition' });
    this.name = 'IllegalTransitionError';
  }
}

function edgeOf<S extends State, E extends Event>(lc: Lifecycle<S, E>, status: string, type: string): ((from: S, event: E) => S) | undefined {
  const row = (lc.edges as Record<string, Record<string, ((from: S, event: E) => S) | undefined>>)[status];
  return row?.[type];
}

export function accepts<S extends State, E extends Event>(lc: Lifecycle<S, E>, from: S, type: E['type']): boolean {
  return edgeOf(lc, from.status, type) !== undefined;
}

/** The state `event` leads to from `from`; an edge the table lacks throws IllegalTransitionError. */
export function transition<S extends State, E extends Event>(lc: Lifecycle<S, E>, from: S, event: E, subject = ''): S {
  const edge = edgeOf(lc, from.status, event.type);
  if (!edge) {
    const acceptedIn = Object.keys(lc.edges).filter((s) => edgeOf(lc, s, event.type) !== undefined);
    throw new IllegalTransitionError(lc.name, from.status, event.type, acceptedIn, subject);
  }
  return edge(from, event);
}

/**
 * The events of something that is created, started, paused and resumed, each operation in two steps (asked,
 * then done) so that an exit can land between them: the container in the guest and the shim's task share them.
 * `failed` means the operation in flight failed, back to where it started.
 */
export type PauseCycleEvent =
  | { readonly type: 'created' }
  | { readonly type: 'start' }
  | { readonly type: 'started' }
  | { readonly type: 'pause' }
  | { readonly type: 'paused' }
  | { readonly type: 'resume' }
  | { readonly type: 'resumed' }
  | { readonly type: 'failed' };
