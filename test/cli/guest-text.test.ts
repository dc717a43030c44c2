import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { startFakeSandbox, vrunSync, writeFakeState } from './fake-sandbox.js';

/**
 * What a guest said (an agent's error, a console line quoted in the failure reason, its kernel release) is shown
 * by ps, inspect and error lines: none of it may reach the terminal as a control sequence.
 */
const ACTIVE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/u; // eslint-disable-line no-control-regex
const HOSTILE = 'agent said: \u001b[2J\u001b]52;c;Y3VybCBldmlsLnNofHNo\u0007\u009b31m\u202egnp.exe\rvrun: all good';

describe('guest text on the terminal', () => {
  const runDir = mkdtempSync(path.join(os.tmpdir(), 'vrun-guest-text-'));
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
    rmSync(runDir, { recursive: true, force: true });
  });

  it('ps -a shows a failed sandbox’s reason on one inert line', async () => {
    const s = await writeFakeState(runDir, { status: 'failed', error: `${HOSTILE}\nsecond line` });
    const r = vrunSync(runDir, ['ps', '-a']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(ACTIVE);
    const row = r.stdout.split('\n').find((l) => l.startsWith(s.id.slice(0, 12)));
    expect(row).toContain('Failed: agent said: \\x1b[2J\\x1b]52;c;');
    expect(r.stdout.trimEnd().split('\n')).toHaveLength(2);
  });

  it('inspect prints the guest’s strings inert, as JSON that still parses', async () => {
    const s = await writeFakeState(runDir, { status: 'failed', error: HOSTILE, guest: { kernel: `6.1.0\u001b[5m\u009b2J${'k'.repeat(5000)}`, cpus: 2 } });
    const r = vrunSync(runDir, ['inspect', s.id]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(ACTIVE);
    const [info] = JSON.parse(r.stdout) as { State: { Error: string }; Sandbox: { Guest: { kernel: string; cpus: number } } }[];
    expect(info?.State.Error).toContain('\\x1b[2J');
    expect(info?.Sandbox.Guest.kernel).toMatch(/^6\.1\.0\\x1b\[5m\\x9b2Jk+… \[\d+ more characters\]$/);
    expect(info?.Sandbox.Guest.kernel.length).toBeLessThan(400);
    expect(info?.Sandbox.Guest.cpus).toBe(2);
  });

  it('an error the sandbox relays from the guest is printed inert (kill’s per-container line, and main’s error line via stats)', async () => {
    const s = await writeFakeState(runDir, { status: 'running' });
    const fake = await startFakeSandbox(runDir, s.id, 'error', HOSTILE);
    children.push(fake);
    const kill = vrunSync(runDir, ['kill', s.id.slice(0, 12)]);
    expect(kill.status).toBe(1);
    expect(kill.stderr).toContain('vrun: agent said: \\x1b[2J\\x1b]52;c;');
    expect(kill.stderr).not.toMatch(ACTIVE);
    const stats = vrunSync(runDir, ['stats', s.id]);
    expect(stats.status).toBe(125);
    expect(stats.stderr).toContain('vrun: agent said: \\x1b[2J');
    expect(stats.stderr).not.toMatch(ACTIVE);
  });
});
