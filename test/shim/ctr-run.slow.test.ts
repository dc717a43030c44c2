/**
 * containerd 1.6 runs tasks through containerd-shim-vrun-v2: each pod boots a real VM (QEMU, TCG on hosts
 * without usable KVM) with vrun's guest kernel, and the containers run under crun inside it. The shim's
 * state goes to a run directory private to this test (VRUN_RUN), so "nothing left behind" is checkable.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { taskServiceClient } from '../../src/shim/protocol/task-service.js';
import { TtrpcClient } from '../../src/ttrpc/client.js';
import { killAndUnmount, mountsUnder, processesNaming } from '../sandbox/leftovers.js';
import { IMAGE, NAMESPACE, RUNTIME, startShimEnv, type ShimEnv } from './shim-fixture.js';

/** The state directory of the pod whose group id (the container id, for ctr) is `groupId`. */
function podDirOf(shimDir: string, groupId: string): string | undefined {
  if (!fs.existsSync(shimDir)) return undefined;
  for (const d of fs.readdirSync(shimDir)) {
    try {
      const rec = JSON.parse(fs.readFileSync(path.join(shimDir, d, 'pod.json'), 'utf8')) as { groupId?: string };
      if (rec.groupId === groupId) return path.join(shimDir, d);
    } catch {
      // not written yet, or being removed
    }
  }
  return undefined;
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('ctr drives tasks in VMs through the vrun shim', () => {
  let env: ShimEnv;
  let runDir: string;
  let shimDir: string;
  const savedRun = process.env.VRUN_RUN;
  const fifo = () => ['--fifo-dir', path.join(env.dir, 'fifo')];
  const run = (id: string, args: string[], extra: string[] = []) => env.ctr(['run', '--snapshotter', 'native', ...fifo(), '--runtime', RUNTIME, ...extra, IMAGE, id, ...args]);
  const diag = () => {
    const logs = fs.existsSync(shimDir) ? fs.readdirSync(shimDir).map((d) => path.join(shimDir, d, 'shim.log')).filter((f) => fs.existsSync(f)) : [];
    return `${logs.map((f) => fs.readFileSync(f, 'utf8').slice(-2000)).join('\n')}\n--- containerd ---\n${env.ctd.log().slice(-2000)}`;
  };

  beforeAll(async () => {
    runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-shimrun-'));
    shimDir = path.join(runDir, 'shim');
    // containerd passes its environment on to the shim it starts.
    process.env.VRUN_RUN = runDir;
    env = await startShimEnv();
  });

  afterAll(async () => {
    await env?.stop();
    // A failed test may leave a pod behind: its processes and mounts all name this test's own run dir.
    killAndUnmount(runDir);
    if (savedRun === undefined) delete process.env.VRUN_RUN;
    else process.env.VRUN_RUN = savedRun;
    fs.rmSync(runDir, { recursive: true, force: true });
  });

  it('runs echo in a guest whose kernel is not the host\'s, and the exit code comes back', async () => {
    const r = await run('echo1', ['sh', '-c', 'echo hi; uname -r; echo to-stderr >&2; exit 3'], ['--rm']);
    const seen = `stdout: ${r.stdout}\nstderr: ${r.stderr}\n${diag()}`;
    expect(r.code, seen).toBe(3);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0], seen).toBe('hi');
    expect(lines[1], seen).toMatch(/^\d+\.\d+/);
    expect(lines[1]).not.toBe(os.release());
    expect(r.stderr, seen).toContain('to-stderr');
    // --rm: containerd deleted the task and shut the shim down; the pod's VM and mounts went with it.
    await until('the pod directory and its processes to go away', () => podDirOf(shimDir, 'echo1') === undefined && processesNaming(shimDir).length === 0, 30_000).catch((err: unknown) => {
      throw new Error(`${String(err)}; left: ${JSON.stringify(processesNaming(shimDir))}\n${diag()}`);
    });
    expect(mountsUnder(shimDir)).toEqual([]);
  });

  it("a command the container does not have: containerd gets the task create error, crun's words with the code NOT_FOUND", async () => {
    const r = await run('nocmd', ['nosuchcmd'], ['--rm']);
    const seen = `stdout: ${r.stdout}\nstderr: ${r.stderr}\n${diag()}`;
    expect(r.code, seen).not.toBe(0);
    // ctr prints the shim's message with containerd's errdefs name of the ttrpc code last.
    expect(r.stderr, seen).toMatch(/failed to create shim task: .*executable file `nosuchcmd` not found in \$PATH: No such file or directory: not found/);
    await until('the failed task\'s pod to go away', () => podDirOf(shimDir, 'nocmd') === undefined && processesNaming(shimDir).length === 0, 30_000);
    expect(mountsUnder(shimDir)).toEqual([]);
    await env.ctr(['containers', 'rm', 'nocmd']);
  });

  it('serves exec, ps, metrics, pause, resume, update, kill and delete on a running task; a duplicate exec id is refused', async () => {
    const opts = path.join(env.dir, 'shim-options-good.json');
    fs.writeFileSync(opts, JSON.stringify({ vmm: 'qemu-tcg', memoryMiB: 512, vcpus: 1 }));
    const started = await run('long', ['sleep', '1000'], ['-d', '--runtime-config-path', opts]);
    expect(started.code, `${started.stderr}\n${diag()}`).toBe(0);
    const podDir = podDirOf(shimDir, 'long') as string;
    expect(podDir).toBeDefined();

    const exec = await env.ctr(['task', 'exec', ...fifo(), '--exec-id', 'e1', 'long', 'sh', '-c', 'echo in-exec $(hostname); exit 5']);
    expect(exec.code, exec.stderr).toBe(5);
    expect(exec.stdout).toContain('in-exec');

    const detached = await env.ctr(['task', 'exec', ...fifo(), '--detach', '--exec-id', 'e2', 'long', 'sleep', '500']);
    expect(detached.code, detached.stderr).toBe(0);
    const dup = await env.ctr(['task', 'exec', ...fifo(), '--exec-id', 'e2', 'long', 'true']);
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toContain('exec id e2 is already in use');

    const ps = await env.ctr(['task', 'ps', 'long']);
    expect(ps.code, ps.stderr).toBe(0);
    // the init's sleep and the detached exec's sleep, as guest pids
    expect(ps.stdout.trim().split('\n').slice(1).filter((l) => /^\s*\d+/.test(l)).length).toBeGreaterThanOrEqual(2);

    const metrics = await env.ctr(['task', 'metrics', 'long']);
    expect(metrics.code, metrics.stderr).toBe(0);
    const usage = /memory\.usage\s+(\d+)/.exec(metrics.stdout);
    expect(usage, metrics.stdout).not.toBeNull();
    expect(Number(usage?.[1])).toBeGreaterThan(0);
    expect(metrics.stdout).toMatch(/pids\.current\s+[1-9]/);

    const pause = await env.ctr(['task', 'pause', 'long']);
    expect(pause.code, pause.stderr).toBe(0);
    expect((await env.ctr(['task', 'ls'])).stdout).toMatch(/long\s+\d+\s+PAUSED/);
    const resume = await env.ctr(['task', 'resume', 'long']);
    expect(resume.code, resume.stderr).toBe(0);
    expect((await env.ctr(['task', 'ls'])).stdout).toMatch(/long\s+\d+\s+RUNNING/);

    // ctr 1.6 has no `task update`: send Update to the shim's socket the way containerd does.
    const conn = await TtrpcClient.connect(path.join(podDir, 'shim.sock'));
    try {
      const limit = 200 * 2 ** 20;
      await taskServiceClient(conn).update({
        id: 'long',
        resources: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', value: Buffer.from(JSON.stringify({ memory: { limit } })) },
      });
      const after = await env.ctr(['task', 'metrics', 'long']);
      expect(after.stdout).toMatch(new RegExp(`memory\\.usage_limit\\s+${limit}\\b`));
    } finally {
      conn.close();
    }

    // The shim is still serving after the refused exec.
    const kill = await env.ctr(['task', 'kill', '--signal', 'SIGKILL', 'long']);
    expect(kill.code, kill.stderr).toBe(0);
    await until('the task to stop', async () => /long\s+\d+\s+STOPPED/.test((await env.ctr(['task', 'ls'])).stdout));
    const del = await env.ctr(['task', 'delete', 'long']);
    expect(del.code, del.stderr).toBe(0);
    expect(del.stdout + del.stderr).toContain('137');
    await env.ctr(['containers', 'rm', 'long']);
    await until('the pod directory and its processes to go away', () => !fs.existsSync(podDir) && processesNaming(podDir).length === 0, 30_000);
  });

  it('exec -t works with ids of CRI length: a 64-hex container and exec id (kubectl exec -it)', async () => {
    const id = createHash('sha256').update(`tty-${process.pid}`).digest('hex');
    const execId = createHash('sha256').update(`exec-${id}`).digest('hex');
    const started = await run(id, ['sleep', '1000'], ['-d']);
    expect(started.code, `${started.stderr}\n${diag()}`).toBe(0);
    const podDir = podDirOf(shimDir, id) as string;
    // ctr wants a terminal of its own for -t: script(1) gives it one.
    const ctrArgs = ['ctr', '--address', env.ctd.address, '--namespace', NAMESPACE, 'task', 'exec', ...fifo(), '-t', '--exec-id', execId, id, 'sh', '-c', 'tty; echo exec-tty-ok'];
    const quoted = ctrArgs.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
    const r = spawnSync('script', ['-qec', quoted, '/dev/null'], { encoding: 'utf8', timeout: 300_000, input: '' });
    expect(r.stdout, `${r.stdout}\n${r.stderr}\n${diag()}`).toMatch(/\/dev\/pts\/\d+/);
    expect(r.stdout).toContain('exec-tty-ok');
    expect(r.status).toBe(0);
    await env.ctr(['task', 'kill', '--signal', 'SIGKILL', id]);
    await until('the task to stop', async () => new RegExp(`${id}\\s+\\d+\\s+STOPPED`).test((await env.ctr(['task', 'ls'])).stdout));
    await env.ctr(['task', 'delete', id]);
    await env.ctr(['containers', 'rm', id]);
    await until('the pod directory and its processes to go away', () => !fs.existsSync(podDir) && processesNaming(podDir).length === 0, 30_000);
  });

  it('containerd restarts while a task runs: the task keeps running and containerd manages it again', async () => {
    const started = await run('survivor', ['sleep', '1000'], ['-d']);
    expect(started.code, `${started.stderr}\n${diag()}`).toBe(0);
    const podDir = podDirOf(shimDir, 'survivor') as string;
    const shimPid = (JSON.parse(fs.readFileSync(path.join(podDir, 'pod.json'), 'utf8')) as { pids: { shim: number } }).pids.shim;
    await env.ctd.restart();
    // the same shim process still serves the pod
    expect(processesNaming(podDir).some((p) => p.pid === shimPid)).toBe(true);
    await until('containerd to list the task as running again', async () => /survivor\s+\d+\s+RUNNING/.test((await env.ctr(['task', 'ls'])).stdout));
    const exec = await env.ctr(['task', 'exec', ...fifo(), '--exec-id', 'r1', 'survivor', 'sh', '-c', 'echo after-restart']);
    expect(exec.code, `${exec.stdout}\n${exec.stderr}\n${diag()}`).toBe(0);
    expect(exec.stdout).toContain('after-restart');
    await env.ctr(['task', 'kill', '--signal', 'SIGKILL', 'survivor']);
    // the exit event reaches the restarted containerd
    await until('the task to stop', async () => /survivor\s+\d+\s+STOPPED/.test((await env.ctr(['task', 'ls'])).stdout));
    expect((await env.ctr(['task', 'delete', 'survivor'])).code).toBe(0);
    await env.ctr(['containers', 'rm', 'survivor']);
    await until('the pod directory and its processes to go away', () => !fs.existsSync(podDir) && processesNaming(podDir).length === 0, 30_000);
  });

  it('kill -9 of the shim: containerd reports the task exited, and nothing is left behind', async () => {
    const started = await run('victim', ['sleep', '1000'], ['-d']);
    expect(started.code, `${started.stderr}\n${diag()}`).toBe(0);
    const podDir = podDirOf(shimDir, 'victim') as string;
    expect(podDir).toBeDefined();
    const record = JSON.parse(fs.readFileSync(path.join(podDir, 'pod.json'), 'utf8')) as { pids: { shim: number; vmm: number; virtiofsd: number } };
    expect(processesNaming(podDir).length).toBeGreaterThanOrEqual(3);
    const events = spawn('ctr', ['--address', env.ctd.address, 'events'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let seen = '';
    events.stdout.on('data', (d: Buffer) => (seen += d.toString()));
    await new Promise((r) => setTimeout(r, 500));
    try {
      process.kill(record.pids.shim, 'SIGKILL');
      await until('containerd to publish the task exit', () => /\/tasks\/exit\s.*victim/.test(seen));
    } finally {
      events.kill();
    }
    await until('containerd to stop listing the task as running', async () => !/victim\s+\d+\s+RUNNING/.test((await env.ctr(['task', 'ls'])).stdout));
    await until('the VM and virtiofsd to be gone', () => processesNaming(podDir).length === 0, 30_000);
    expect(mountsUnder(podDir)).toEqual([]);
    expect(fs.existsSync(podDir)).toBe(false);
    await env.ctr(['task', 'delete', 'victim']);
    await env.ctr(['containers', 'rm', 'victim']);
  });
});
