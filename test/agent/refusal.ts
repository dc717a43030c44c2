import { expect } from 'vitest';
import { AgentError } from '../../src/agent/host/agent-error.js';

/** The AgentError an agent call must fail with (a call that succeeds fails the test). */
export async function refusal(p: Promise<unknown>): Promise<AgentError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AgentError);
  return err as AgentError;
}
