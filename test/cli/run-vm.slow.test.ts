import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeRunDir } from './fake-sandbox.js';
import { ensureGuestImage } from '../../src/guest-image/image.js';
import { isAlive } from '../../src/sandbox/cleanup.js';

/**
 * `vrun run --vm` end to end: the real CLI, a real sandbox process, real QEMU (TCG here), virtiofsd, the
 * guest agent and crun in the guest. Each test asserts on what a user would see.
 */
const root = path.resolve(import.meta.dirname, '../..');
const runDir = mkdtempSync('/run/vrun-test-');

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a shell command on a terminal of its own (script(1)), as vrun -t needs, with vrun's run dir. */
function underScript(cmd: string): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, VRUN_RUN: runDir, VRUN_DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** A terminal's output as its non-empty lines (a pty ends lines with \r\n, and may send bare \r). */
function terminalLines(out: string): string[] {
  return out.split(/\r?\n|\r/).map((l) => l.trim()).filter(Boolean);
}

function vrun(args: string[], opts: { input?: string } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(root, 'bin/vrun.js'), ...args], {
      env: { ...process.env, VRUN_RUN: runDir, VRUN_DEBUG: '' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

interface InspectOut {
  Id: string;
  State: { Status: string; OOMKilled: boolean; ExitCode: number; Error: string };
  Sandbox: { Pids: { sandbox?: number; vmm?: number; virtiofsd?: number[] } };
}

async function inspect(ref: string): Promise<InspectOut> {
  const r = await vrun(['inspect', ref]);
  expect(r.status, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as InspectOut[])[0] as InspectOut;
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(dir));
}

async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** After `rm -f`: no process of the sandbox, no mount under its directory, no state. */
function expectNothingLeft(info: InspectOut): void {
  const pids = [info.Sandbox.Pids.sandbox, info.Sandbox.Pids.vmm, ...(info.Sandbox.Pids.virtiofsd ?? [])].filter((p): p is number => p !== undefined);
  expect(pids.length).toBeGreaterThanOrEqual(3);
  for (const p of pids) expect(isAlive(p), `pid ${p} still alive`).toBe(false);
  expect(mountsUnder(path.join(runDir, info.Id))).toEqual([]);
  expect(existsSync(path.join(runDir, info.Id))).toBe(false);
}

describe('vrun run --vm (QEMU TCG)', () => {
  beforeAll(async () => {
    await ensureGuestImage();
  });
  afterAll(() => removeRunDir(runDir));

  it('prints exactly the output of echo', async () => {
    const r = await vrun(['run', '--vm', '--rm', 'busybox', 'echo', 'hello']);
    expect(r.stderr.replace(/^vrun: note: .*\n/, '')).toBe('');
    expect(r.stdout).toBe('hello\n');
    expect(r.status).toBe(0);
    expect(readdirSync(runDir).filter((e) => /^[a-f0-9]{32}$/.test(e))).toEqual([]);
  });

  it('exits with the container\'s exit code', async () => {
    const r = await vrun(['run', '--rm', 'busybox', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(r.status).toBe(3);
    expect(r.stdout).toBe('out\n');
    expect(r.stderr).toContain('err\n');
  });

  it.each([
    [['nosuchcmd'], 127, 'vrun: nosuchcmd: command not found in the container'],
    [['/etc/passwd'], 126, 'vrun: /etc/passwd: permission denied: not an executable file in the container'],
  ])("a command the container cannot run, like Docker: vrun run %j exits %i with one line", async (cmd, status, line) => {
    const r = await vrun(['run', '--vm', '--rm', 'busybox', ...cmd]);
    expect(r.status, r.stderr).toBe(status);
    expect(r.stderr.replace(/^vrun: note: .*\n/, '')).toBe(`${line}\n`);
    expect(r.stdout).toBe('');
    expect(readdirSync(runDir).filter((e) => /^[a-f0-9]{32}$/.test(e))).toEqual([]);
  });

  it('a command the container cannot run, detached and through exec: the same exit codes', async () => {
    const d = await vrun(['run', '-d', 'busybox', 'nosuchcmd']);
    expect(d.status, d.stderr).toBe(127);
    expect(d.stderr.replace(/^vrun: note: .*\n/, '')).toBe('vrun: nosuchcmd: command not found in the container\n');
    const up = await vrun(['run', '-d', 'busybox', 'sleep', '1000']);
    expect(up.status, up.stderr).toBe(0);
    const id = up.stdout.trim();
    try {
      const missing = await vrun(['exec', id, 'nosuchcmd', 'arg']);
      expect(missing.status, missing.stderr).toBe(127);
      expect(missing.stderr).toBe('vrun: nosuchcmd: command not found in the container\n');
      const denied = await vrun(['exec', id, '/etc/passwd']);
      expect(denied.status, denied.stderr).toBe(126);
      expect(denied.stderr).toBe('vrun: /etc/passwd: permission denied: not an executable file in the container\n');
      // The container is unharmed by its failed execs.
      expect((await vrun(['exec', id, 'true'])).status).toBe(0);
    } finally {
      expect((await vrun(['rm', '-f', id])).status).toBe(0);
    }
  });

  it('pipes stdin with -i', async () => {
    const r = await vrun(['run', '--rm', '-i', 'busybox', 'cat'], { input: 'x\n' });
    expect(r.stdout).toBe('x\n');
    expect(r.status).toBe(0);
  });

  it('gives a terminal with -t', async () => {
    const r = await vrun(['run', '--rm', '-t', 'busybox', 'sh', '-c', 'test -t 1 && echo is-a-tty']);
    expect(r.stdout).toContain('is-a-tty');
    expect(r.status).toBe(0);
  });

  it('follows the local terminal\'s size with -t, at start and on a resize', async () => {
    // `script` gives the CLI a real pty. The container reports its start size, then signals through a
    // volume; only then does the outer shell resize the pty, so the resize cannot race the start.
    // `stty rows R cols C` is two TIOCSWINSZ calls, each a SIGWINCH, so the container may see the
    // rows change alone first: it waits for the final size rather than for any change.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vrun-tty-'));
    const sig = path.join(dir, 'sig');
    mkdirSync(sig);
    const inner = 'stty size; touch /sig/started; i=0; while [ $i -lt 400 ]; do s=$(stty size); if [ "$s" = "33 101" ]; then echo "resized to $s"; exit 0; fi; sleep 0.1; i=$((i+1)); done; echo "still $s"; exit 9';
    writeFileSync(path.join(dir, 'inner.sh'), inner);
    writeFileSync(
      path.join(dir, 'outer.sh'),
      [
        'stty rows 20 cols 70',
        `"${process.execPath}" "${path.join(root, 'bin/vrun.js')}" run --rm -t -v "${sig}:/sig" busybox sh -c "$(cat "${dir}/inner.sh")" &`,
        'pid=$!',
        `i=0; while [ ! -e "${sig}/started" ] && [ $i -lt 3000 ]; do sleep 0.2; i=$((i+1)); done`,
        'stty rows 33 cols 101',
        'kill -WINCH $pid',
        'wait $pid',
      ].join('\n'),
    );
    try {
      const r = await underScript(`sh ${dir}/outer.sh`);
      const lines = terminalLines(r.stdout);
      expect(lines, r.stdout + r.stderr).toContain('20 70');
      expect(lines).toContain('resized to 33 101');
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('forwards SIGTERM to the container and exits with its code', async () => {
    const child = spawn(process.execPath, [path.join(root, 'bin/vrun.js'), 'run', '--rm', 'busybox', 'sh', '-c', 'trap "echo got-term; exit 7" TERM; echo ready; while true; do sleep 1; done'], {
      env: { ...process.env, VRUN_RUN: runDir, VRUN_DEBUG: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready\n')) child.kill('SIGTERM');
    });
    const status = await new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    expect(out).toBe('ready\ngot-term\n');
    expect(status).toBe(7);
  });

  it('applies -e, -w, -u and --read-only', async () => {
    const r = await vrun(['run', '--rm', '-e', 'FOO=bar baz', '-w', '/tmp', '-u', '1000:1001', '--read-only', 'busybox', 'sh', '-c', 'echo "$FOO"; pwd; id -u; id -g; touch /newfile 2>/dev/null && echo writable || echo read-only']);
    expect(r.stdout.split('\n')).toEqual(['bar baz', '/tmp', '1000', '1001', 'read-only', '']);
    expect(r.status).toBe(0);
  });

  it('runs each container on its own kernel, not the host\'s, with the host\'s wall-clock time', async () => {
    const cmd = ['run', '--rm', 'busybox', 'sh', '-c', 'uname -r; cat /proc/sys/kernel/random/boot_id; date +%s'];
    const before = Math.floor(Date.now() / 1000);
    const [a, b] = await Promise.all([vrun(cmd), vrun(cmd)]);
    const after = Math.ceil(Date.now() / 1000);
    const [relA, bootA, clockA] = a.stdout.trim().split('\n');
    const [relB, bootB, clockB] = b.stdout.trim().split('\n');
    // A guest without a time source starts at 1970; the RTC (TCG) or kvmclock (KVM) gives it the host's.
    for (const clock of [clockA, clockB]) {
      expect(Number(clock)).toBeGreaterThanOrEqual(before - 2);
      expect(Number(clock)).toBeLessThanOrEqual(after + 2);
    }
    const hostBoot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    expect(relA).toMatch(/^\d+\.\d+/);
    expect(relA).not.toBe(os.release());
    expect(relB).toBe(relA);
    expect(bootA).toMatch(/^[0-9a-f-]{36}$/);
    expect(bootA).not.toBe(hostBoot);
    expect(bootB).not.toBe(hostBoot);
    expect(bootA).not.toBe(bootB);
  });

  it('OOM-kills a memory hog under --memory 64m: exit 137, inspect says OOMKilled', async () => {
    const r = await vrun(['run', '--name', 'oom', '--memory', '64m', 'busybox', 'dd', 'if=/dev/zero', 'of=/dev/null', 'bs=200M', 'count=1']);
    expect(r.status).toBe(137);
    const info = await inspect('oom');
    expect(info.State.OOMKilled).toBe(true);
    expect(info.State.ExitCode).toBe(137);
    expect((await vrun(['rm', 'oom'])).status).toBe(0);
  });

  it('stops a fork bomb with --pids-limit', async () => {
    // The shell forks until the limit refuses it; busybox sh then gives up with "can't fork".
    const script = 'read m < /sys/fs/cgroup/pids.max; echo max=$m; while true; do sleep 30 & done';
    const r = await vrun(['run', '--rm', '--pids-limit', '8', 'busybox', 'sh', '-c', script]);
    expect(r.stdout).toBe('max=8\n');
    expect(r.stderr).toMatch(/can't fork/);
    expect(r.status).not.toBe(0);
  });

  it('shares host directories with -v, read-write and :ro', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vrun-vol-'));
    writeFileSync(path.join(dir, 'in'), 'from host\n');
    const rw = await vrun(['run', '--rm', '-v', `${dir}:/data`, 'busybox', 'sh', '-c', 'cat /data/in; echo from guest > /data/out']);
    expect(rw.stdout).toBe('from host\n');
    expect(rw.status).toBe(0);
    expect(readFileSync(path.join(dir, 'out'), 'utf8')).toBe('from guest\n');
    const ro = await vrun(['run', '--rm', '-v', `${dir}:/data:ro`, 'busybox', 'sh', '-c', 'cat /data/in; echo x > /data/denied']);
    expect(ro.stdout).toBe('from host\n');
    expect(ro.status).not.toBe(0);
    expect(ro.stderr).toMatch(/Read-only file system/);
    expect(existsSync(path.join(dir, 'denied'))).toBe(false);
  });

  it('runs detached: ps, logs -f, exec, stop, rm', async () => {
    const d = await vrun(['run', '-d', '--name', 'ticker', 'busybox', 'sh', '-c', 'trap "echo bye; exit 0" TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done']);
    expect(d.status, d.stderr).toBe(0);
    const id = d.stdout.trim();
    expect(id).toMatch(/^[a-f0-9]{32}$/);
    expect((await vrun(['ps'])).stdout).toMatch(/ticker/);
    const clash = await vrun(['run', '-d', '--name', 'ticker', 'busybox', 'true']);
    expect(clash.status).toBe(125);
    expect(clash.stderr.trim().split('\n')).toHaveLength(1);
    expect(clash.stderr).toMatch(/name "ticker" is already in use/);
    await waitFor(async () => (await vrun(['logs', 'ticker'])).stdout.includes('tick 1'), 60_000, 'two ticks in the logs');
    const ex = await vrun(['exec', 'ticker', 'sh', '-c', 'echo exec-says-hi; exit 5']);
    expect(ex.stdout).toBe('exec-says-hi\n');
    expect(ex.status).toBe(5);
    const execIn = await vrun(['exec', '-i', 'ticker', 'cat'], { input: 'piped\n' });
    expect(execIn.stdout).toBe('piped\n');
    // exec -u is resolved by the agent in the guest, in the container's own files (written here by the guest).
    const addUser = await vrun(['exec', 'ticker', 'sh', '-c', 'echo "alice:x:1000:1001::/:/bin/sh" >> /etc/passwd']);
    expect(addUser.status, addUser.stderr).toBe(0);
    const asAlice = await vrun(['exec', '-u', 'alice', 'ticker', 'sh', '-c', 'echo $(id -u) $(id -g)']);
    expect(asAlice.stdout, asAlice.stderr).toBe('1000 1001\n');
    const nobodyHere = await vrun(['exec', '-u', 'bob', 'ticker', 'true']);
    expect(nobodyHere.status).toBe(125);
    expect(nobodyHere.stderr).toMatch(/unable to find user bob/);
    // exec -t: the local terminal's size from the process's first instruction (OCI consoleSize), not after a resize.
    const execTty = await underScript(`stty rows 21 cols 71; "${process.execPath}" "${path.join(root, 'bin/vrun.js')}" exec -t ticker stty size`);
    expect(terminalLines(execTty.stdout), execTty.stdout + execTty.stderr).toEqual(['21 71']);
    const st = await vrun(['stats', '--format', 'json', 'ticker']);
    expect(st.status, st.stderr).toBe(0);
    const stats = (JSON.parse(st.stdout) as Record<string, { memory: { currentBytes: number }; pids: { current: number } }>).ticker;
    expect(stats?.memory.currentBytes).toBeGreaterThan(0);
    expect(stats?.pids.current).toBeGreaterThanOrEqual(1);
    const follow = vrun(['logs', '-f', 'ticker']);
    const stop = await vrun(['stop', 'ticker']);
    expect(stop.status).toBe(0);
    const f = await follow;
    expect(f.stdout).toMatch(/tick 0\ntick 1\n/);
    expect(f.stdout).toMatch(/bye\n$/);
    const info = await inspect('ticker');
    expect(info.State.Status).toBe('exited');
    expect((await vrun(['ps'])).stdout).not.toMatch(/ticker/);
    expect((await vrun(['ps', '-a'])).stdout).toMatch(/ticker.*|Exited \(0\)/);
    expect((await vrun(['rm', 'ticker'])).status).toBe(0);
    expect(existsSync(path.join(runDir, id))).toBe(false);
  });

  it.each([
    ['QEMU', (i: InspectOut) => i.Sandbox.Pids.vmm, /VM stopped unexpectedly.*SIGKILL/],
    ['virtiofsd', (i: InspectOut) => i.Sandbox.Pids.virtiofsd?.[0], /virtiofsd for the rootfs exited.*SIGKILL/],
    ['the sandbox process', (i: InspectOut) => i.Sandbox.Pids.sandbox, /sandbox process died/],
  ])('kill -9 of %s: ps shows the sandbox failed with the reason; rm -f leaves nothing', async (_what, pidOf, reason) => {
    const d = await vrun(['run', '-d', 'busybox', 'sleep', '1000']);
    expect(d.status, d.stderr).toBe(0);
    const id = d.stdout.trim();
    const info = await inspect(id);
    const pid = pidOf(info);
    expect(pid).toBeGreaterThan(1);
    process.kill(pid as number, 'SIGKILL');
    await waitFor(async () => (await vrun(['ps', '-a'])).stdout.includes('Failed'), 60_000, 'ps to show the failure');
    const ps = await vrun(['ps', '-a']);
    expect(ps.stdout.split('\n').find((l) => l.startsWith(id.slice(0, 12)))).toMatch(reason);
    expect((await vrun(['rm', '-f', id])).status).toBe(0);
    expectNothingLeft(info);
  });
});
