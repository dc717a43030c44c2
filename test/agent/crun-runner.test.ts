import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

/**
 * The agent's crun runner starts crun with procSpawn (native/src/process_ops.cc) and collects it through the Reaper. Like the reaper
 * test, the real runner runs in its own Node process: the Reaper makes that process a subreaper and listens
 * for SIGCHLD, which a vitest worker cannot offer. The script prints one JSON line of observations.
 */
const script = (dir: string) => `
import fs from 'node:fs';
import { pino } from 'pino';
import { Reaper } from ${JSON.stringify(path.join(root, 'dist/src/agent/guest/reaper.js'))};
import { crunRunner } from ${JSON.stringify(path.join(root, 'dist/src/agent/guest/crun.js'))};
const dir = ${JSON.stringify(dir)};
const reaper = new Reaper(pino({ level: 'silent' }));
const crun = crunRunner('crun', dir, reaper);
const failure = (p) => p.then(() => 'no error', (e) => e.message);
const fds = () => fs.readdirSync('/proc/self/fd').length;
const out = {};
out.version = await crun.run(['--version']);
out.missing = await failure(crun.run(['state', 'nope']));
out.notFound = await failure(crunRunner(dir + '/no-such-crun', dir, reaper).run(['state', 'x']));
// Stand-ins for a crun that hangs and for what the child inherits: shell scripts under the runner.
// fd 987 is not open: the child must not run crun with a stdout it could not set up.
out.badStdio = await failure(crun.run(['--version'], { stdio: [-1, 987, -1] }));
out.hung = await failure(crunRunner(dir + '/hang.sh', dir, reaper).run(['create'], { timeoutMs: 300 }));
out.signals = await crunRunner(dir + '/signals.sh', dir, reaper).run(['x']);
// The calls above end with fds libuv closes asynchronously (the hung child's pipes after its kill): counted once
// the count holds still, so only what the 30 calls below keep open shows as a difference.
const settled = async () => {
  for (let n = fds(), i = 0; i < 100; i++) {
    await new Promise((r) => setTimeout(r, 20));
    const m = fds();
    if (m === n) return m;
    n = m;
  }
  return fds();
};
const before = await settled();
for (let i = 0; i < 30; i++) await crun.run(['--version']);
await failure(crun.run(['state', 'nope']));
out.fdDelta = (await settled()) - before;
out.leftLogs = fs.readdirSync(dir).filter((f) => f.endsWith('.log'));
console.log(JSON.stringify(out));
process.exit(0);
`;

describe('agent crun runner', () => {
  let dir: string;
  let seen: Record<string, unknown>;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-crun-runner-'));
    fs.writeFileSync(path.join(dir, 'hang.sh'), '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 });
    fs.writeFileSync(path.join(dir, 'signals.sh'), '#!/bin/sh\ngrep -E "^Sig(Blk|Ign):" /proc/self/status\n', { mode: 0o755 });
    const res = spawnSync(process.execPath, ['--input-type=module', '-e', script(dir)], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    if (res.status !== 0) throw new Error(`the runner script failed (${res.status ?? res.signal}): ${res.stderr}`);
    seen = JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("returns crun's stdout", () => {
    expect(seen.version).toBe(execFileSync('crun', ['--root', dir, '--version'], { encoding: 'utf8' }));
  });

  it("reports a failing call with crun's own message from its log", () => {
    expect(seen.missing).toMatch(/^crun state failed: error opening file `.*\/nope\/status`: No such file or directory/);
  });

  it('names a crun binary that cannot be run', () => {
    expect(seen.notFound).toMatch(/^crun state failed: cannot run .*no-such-crun: ENOENT/);
  });

  it('refuses to run crun when its stdio cannot be set up, naming the step', () => {
    expect(seen.badStdio).toMatch(/^crun --version failed: cannot run crun: EBADF: Bad file descriptor, dup2$/);
  });

  it('kills a call that outlives its timeout', () => {
    expect(seen.hung).toMatch(/^crun create failed: exit status 137/);
  });

  it('gives the child no blocked or ignored signals (the agent ignores SIGPIPE)', () => {
    expect(seen.signals).toBe('SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n');
  });

  it('leaks no fds and leaves no per-call logs behind', () => {
    expect(seen.fdDelta).toBe(0);
    expect(seen.leftLogs).toEqual([]);
  });
});
