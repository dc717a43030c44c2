/**
 * Table-driven checks of a lifecycle: every state (one sample of each) against every event (one sample of
 * each). The expected edges are written out in each test, apart from the module's own table, so a changed
 * edge fails the test that spells it out.
 */
import { expect } from 'vitest';
import { IllegalTransitionError, transition, type Event, type Lifecycle, type PauseCycleEvent, type State } from '../../src/common/lifecycle.js';

/** For each state, the events it accepts and the status each one leads to; everything else must be refused. */
export type Expected<S extends State, E extends Event> = { [K in S['status']]: Partial<Record<E['type'], S['status']>> };

export function checkLifecycle<S extends State, E extends Event>(lc: Lifecycle<S, E>, states: Record<S['status'], S>, events: Record<E['type'], E>, expected: Expected<S, E>): { legal: number; illegal: number } {
  // Every state of the module's table has a sample here, and no more.
  expect(Object.keys(lc.edges).sort()).toEqual(Object.keys(states).sort());
  let legal = 0;
  let illegal = 0;
  for (const from of Object.values(states) as S[]) {
    for (const event of Object.values(events) as E[]) {
      const to = (expected as Record<string, Record<string, string | undefined>>)[from.status]?.[event.type];
      if (to !== undefined) {
        expect(transition(lc, from, event).status, `${from.status} --${event.type}-->`).toBe(to);
        legal++;
        continue;
      }
      let err: unknown;
      try {
        transition(lc, from, event, 'x1');
      } catch (e) {
        err = e;
      }
      expect(err, `${from.status} --${event.type}--> must be refused`).toBeInstanceOf(IllegalTransitionError);
      const e = err as IllegalTransitionError;
      expect([e.lifecycle, e.from, e.event, e.kind]).toEqual([lc.name, from.status, event.type, 'precondition']);
      expect(e.message).toContain(`${lc.name} x1 is ${from.status}`);
      expect(e.message).toContain(`cannot ${event.type}`);
      illegal++;
    }
  }
  return { legal, illegal };
}

/** One of each event the container and the task lifecycles share. */
export const pauseCycleEvents: Record<PauseCycleEvent['type'], PauseCycleEvent> = {
  created: { type: 'created' },
  start: { type: 'start' },
  started: { type: 'started' },
  pause: { type: 'pause' },
  paused: { type: 'paused' },
  resume: { type: 'resume' },
  resumed: { type: 'resumed' },
  failed: { type: 'failed' },
};
