import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { isAlive } from '../../src/sandbox/cleanup.js';
import { stopReplyDeadlineMs } from '../../src/sandbox/control-protocol.js';
import { readState } from '../../src/sandbox/state.js';
import { startFakeSandbox, vrun, writeFakeState } from './fake-sandbox.js';

/**
 * `vrun stop -t T` returns within T + a fixed bound even when the sandbox process never answers: it is then
 * killed the way `rm -f` kills it, and its state kept, marked failed with the reason.
 */
describe('vrun stop deadline', () => {
  const runDir = mkdtempSync(path.join(os.tmpdir(), 'vrun-stop-'));
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
    rmSync(runDir, { recursive: true, force: true });
  });

  it('a sandbox that accepts the request and never replies is killed after the deadline', async () => {
    const s = await writeFakeState(runDir, { status: 'running' });
    const fake = await startFakeSandbox(runDir, s.id, 'mute');
    children.push(fake);
    const r = await vrun(runDir, ['stop', '-t', '1', s.id]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${s.id}\n`);
    expect(r.stderr).toMatch(/did not answer "stop" within .*its processes were killed/);
    // It waited the reply deadline, not forever: 1 s + the fixed bound, plus the CLI's own start and the kill.
    expect(r.ms).toBeGreaterThanOrEqual(stopReplyDeadlineMs(1));
    expect(r.ms).toBeLessThan(stopReplyDeadlineMs(1) + 8000);
    expect(isAlive(fake.pid as number)).toBe(false);
    const after = await readState(s.id, runDir);
    expect(after?.status).toBe('failed');
    expect(after?.error).toMatch(/did not stop in time/);
  }, 60_000);
});
