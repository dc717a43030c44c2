import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

/**
 * `crun exec --detach` hands the exec'd process to the agent (a child subreaper) and exits; the agent reads
 * crun's pid file and only then watches the pid. If the process exits first, the agent's orphan sweep reaps
 * it. Its exit must still reach the late watch() instead of turning into 255 ("status unknown"). The real
 * Reaper runs in its own Node process here: it makes that process a subreaper and listens for SIGCHLD,
 * neither of which a vitest worker can offer.
 */
const script = `
import { spawn } from 'node:child_process';
import { pino } from 'pino';
import { Reaper } from ${JSON.stringify(path.join(root, 'dist/src/agent/guest/reaper.js'))};
import { trackOwnChild } from ${JSON.stringify(path.join(root, 'dist/src/agent/guest/own-children.js'))};
const reaper = new Reaper(pino({ level: 'silent' }));
const codes = [];
for (const code of [7, 0, 42]) {
  // python3 plays crun: it forks the "exec'd process", prints its pid and exits before it does.
  const crun = trackOwnChild(spawn('python3', ['-c', \`import os,time\\npid = os.fork()\\nif pid == 0:\\n  time.sleep(0.05)\\n  os._exit(\${code})\\nprint(pid, flush=True)\\nos._exit(0)\`], { stdio: ['ignore', 'pipe', 'inherit'] }));
  let out = '';
  crun.stdout.on('data', (d) => (out += d));
  await new Promise((r) => crun.once('close', r));
  // Longer than the sweep's period: by now the orphan was reaped with nobody watching it.
  await new Promise((r) => setTimeout(r, 1300));
  codes.push((await reaper.watch(Number(out.trim()))).code);
}
console.log(JSON.stringify(codes));
process.exit(0);
`;

describe('agent reaper', () => {
  it('keeps the exit of a detached process that ended before the agent watched it', () => {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout: 30_000 });
    expect(JSON.parse(out.trim().split('\n').pop() ?? '[]')).toEqual([7, 0, 42]);
  });
});
