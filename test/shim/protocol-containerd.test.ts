/**
 * Our Task service server driven by a real Go ttrpc client: containerd 1.6 itself. A stand-in shim
 * binary only answers containerd's `start` with the address of a server running in this test, which
 * mounts a small ShimTaskService implementation (no VM: a scripted process table). `ctr run`, `ctr task
 * exec/ps/kill/delete` then travel containerd -> ttrpc -> our server, and the implementation's events go
 * back through our publisher, so both directions of the shim protocol meet the real peer.
 */
import { execFile, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TtrpcServer, type CallContext } from '../../src/ttrpc/server.js';
import { Code, TtrpcError } from '../../src/ttrpc/status.js';
import { timestampFromDate } from '../../src/ttrpc/protobuf/well-known.js';
import { EventPublisher } from '../../src/shim/events.js';
import { mountTaskService, type ShimTaskService } from '../../src/shim/protocol/task-service.js';
import type * as m from '../../src/shim/protocol/task-messages.js';
import { TaskStatus } from '../../src/shim/protocol/types.js';
import { startContainerd, type Containerd } from '../ttrpc/containerd-fixture.js';
import { writeImageArchive } from './shim-fixture.js';

const run = promisify(execFile);
const IMAGE = 'docker.io/library/vrunproto:latest';
const RUNTIME = 'io.containerd.vrunproto.v2';

interface Proc {
  pid: number;
  status: number;
  exitStatus: number;
  exitedAt?: Date;
  exited: Promise<void>;
  exit(code: number): void;
}

/** Scripted processes: c1's init exits 7 after a moment, execs exit 3 (unless they run sleep), kill exits 128+signal. */
class ScriptedTasks implements ShimTaskService {
  readonly calls: { rpc: string; detail?: unknown }[] = [];
  private readonly procs = new Map<string, Proc>();
  private nextPid = 5000;
  private readonly longExecs = new Set<string>();

  constructor(private readonly events: () => EventPublisher) {}

  // containerd 1.6 sends no ttrpc metadata to shims (no namespace header): the shim learns its namespace
  // from the -namespace flag of `start`. So calls are recorded without it.
  private note(rpc: string, _ctx: CallContext, detail?: unknown): void {
    this.calls.push({ rpc, detail });
  }

  private addProc(key: string): Proc {
    let resolve!: () => void;
    const exited = new Promise<void>((r) => (resolve = r));
    const p: Proc = {
      pid: this.nextPid++,
      status: TaskStatus.CREATED,
      exitStatus: 0,
      exited,
      exit: (code) => {
        if (p.status === TaskStatus.STOPPED) return;
        p.status = TaskStatus.STOPPED;
        p.exitStatus = code;
        p.exitedAt = new Date();
        resolve();
      },
    };
    this.procs.set(key, p);
    return p;
  }

  private proc(id: string, execId: string): Proc {
    const p = this.procs.get(`${id}/${execId}`);
    if (!p) throw new TtrpcError(Code.NOT_FOUND, `process ${id}/${execId} not found`);
    return p;
  }

  async create(req: m.CreateTaskRequest, ctx: CallContext) {
    this.note('Create', ctx, { bundleHasConfig: fs.existsSync(path.join(req.bundle, 'config.json')), rootfs: req.rootfs.map((r) => r.type), stdout: req.stdout });
    const p = this.addProc(`${req.id}/`);
    await this.events().publish('TaskCreate', { containerId: req.id, bundle: req.bundle, rootfs: req.rootfs, io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal }, pid: p.pid });
    return { pid: p.pid };
  }

  async start(req: m.StartRequest, ctx: CallContext) {
    this.note('Start', ctx, { execId: req.execId });
    const p = this.proc(req.id, req.execId);
    p.status = TaskStatus.RUNNING;
    // c1's init and short execs end by themselves; everything else runs until killed.
    const autoExit = req.execId ? !this.longExecs.has(req.execId) : req.id === 'c1';
    const code = req.execId ? 3 : 7;
    if (autoExit) {
      setTimeout(() => {
        p.exit(code);
        void this.events()
          .publish('TaskExit', { containerId: req.id, id: req.execId || req.id, pid: p.pid, exitStatus: p.exitStatus, exitedAt: timestampFromDate(p.exitedAt!) })
          .catch(() => undefined);
      }, 300);
    }
    if (req.execId) await this.events().publish('TaskExecStarted', { containerId: req.id, execId: req.execId, pid: p.pid });
    else await this.events().publish('TaskStart', { containerId: req.id, pid: p.pid });
    return { pid: p.pid };
  }

  async state(req: m.StateRequest, ctx: CallContext) {
    this.note('State', ctx);
    const p = this.proc(req.id, req.execId);
    return { id: req.execId || req.id, pid: p.pid, status: p.status, exitStatus: p.exitStatus, exitedAt: p.exitedAt ? timestampFromDate(p.exitedAt) : undefined, execId: req.execId };
  }

  async wait(req: m.WaitRequest, ctx: CallContext) {
    this.note('Wait', ctx, { execId: req.execId });
    const p = this.proc(req.id, req.execId);
    await p.exited;
    return { exitStatus: p.exitStatus, exitedAt: timestampFromDate(p.exitedAt!) };
  }

  async delete(req: m.DeleteRequest, ctx: CallContext) {
    this.note('Delete', ctx, { execId: req.execId });
    const p = this.proc(req.id, req.execId);
    this.procs.delete(`${req.id}/${req.execId}`);
    if (!req.execId) await this.events().publish('TaskDelete', { containerId: req.id, pid: p.pid, exitStatus: p.exitStatus, exitedAt: timestampFromDate(p.exitedAt ?? new Date()) });
    return { pid: p.pid, exitStatus: p.exitStatus, exitedAt: timestampFromDate(p.exitedAt ?? new Date()) };
  }

  async exec(req: m.ExecProcessRequest, ctx: CallContext) {
    const spec = JSON.parse(Buffer.from(req.spec?.value ?? new Uint8Array(0)).toString()) as { args?: string[] };
    this.note('Exec', ctx, { execId: req.execId, typeUrl: req.spec?.typeUrl, args: spec.args });
    if (this.procs.has(`${req.id}/${req.execId}`)) throw new TtrpcError(Code.ALREADY_EXISTS, `exec id ${req.execId} is already in use`);
    this.addProc(`${req.id}/${req.execId}`);
    if (spec.args?.[0] === 'sleep') this.longExecs.add(req.execId);
    await this.events().publish('TaskExecAdded', { containerId: req.id, execId: req.execId });
  }

  async kill(req: m.KillRequest, ctx: CallContext) {
    this.note('Kill', ctx, { signal: req.signal, execId: req.execId });
    this.proc(req.id, req.execId).exit(128 + req.signal);
  }

  async pids(req: m.PidsRequest, ctx: CallContext) {
    this.note('Pids', ctx);
    return { processes: [...this.procs.entries()].filter(([k]) => k.startsWith(`${req.id}/`)).map(([, p]) => ({ pid: p.pid })) };
  }

  async connect(req: m.ConnectRequest, ctx: CallContext) {
    this.note('Connect', ctx);
    return { shimPid: process.pid, taskPid: this.procs.get(`${req.id}/`)?.pid ?? 0, version: '2' };
  }

  async shutdown(_req: m.ShutdownRequest, ctx: CallContext) {
    this.note('Shutdown', ctx);
  }

  async pause(_req: m.PauseRequest, ctx: CallContext) {
    this.note('Pause', ctx);
  }
  async resume(_req: m.ResumeRequest, ctx: CallContext) {
    this.note('Resume', ctx);
  }
  async resizePty(_req: m.ResizePtyRequest, ctx: CallContext) {
    this.note('ResizePty', ctx);
  }
  async closeIO(_req: m.CloseIORequest, ctx: CallContext) {
    this.note('CloseIO', ctx);
  }
  async update(_req: m.UpdateTaskRequest, ctx: CallContext) {
    this.note('Update', ctx);
  }
  async stats(_req: m.StatsRequest, ctx: CallContext): Promise<{ stats?: { typeUrl: string; value: Uint8Array } }> {
    this.note('Stats', ctx);
    throw new TtrpcError(Code.UNIMPLEMENTED, 'stats are not scripted in this test');
  }
}

/** A one-layer OCI image archive that `ctr images import` accepts. */
function buildImageArchive(dir: string): string {
  const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
  const rootfs = path.join(dir, 'rootfs');
  fs.mkdirSync(rootfs, { recursive: true });
  fs.writeFileSync(path.join(rootfs, 'hello'), 'hello from the test image\n');
  const layer = execFileSync('tar', ['-C', rootfs, '-cf', '-', '.']);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/hello'] }, rootfs: { type: 'layers', diff_ids: [`sha256:${sha(layer)}`] } }));
  return writeImageArchive(dir, layer, config, IMAGE);
}

describe('containerd drives our Task service server', () => {
  let dir: string;
  let ctd: Containerd;
  let server: TtrpcServer;
  let publisher: EventPublisher | undefined;
  let tasks: ScriptedTasks;
  let fifoDir: string;

  const ctr = (...args: string[]) => run('ctr', ['--address', ctd.address, '--namespace', 'vrunns', ...args], { timeout: 30_000 });
  /** Runs ctr and returns its exit code and output instead of throwing on a non-zero exit. */
  const ctrStatus = async (...args: string[]): Promise<{ code: number; out: string }> => {
    try {
      const r = await ctr(...args);
      return { code: 0, out: r.stdout + r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
    }
  };

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-shimctd-'));
    const shimSocket = path.join(dir, 'shim.sock');
    fifoDir = path.join(dir, 'fifo');
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin);
    // The stand-in shim: `start` prints where the test's server listens; `delete` has nothing to clean.
    fs.writeFileSync(path.join(bin, 'containerd-shim-vrunproto-v2'), `#!/bin/sh\nfor a; do last=$a; done\nif [ "$last" = start ]; then printf '%s' 'unix://${shimSocket}'; fi\nexit 0\n`, { mode: 0o755 });
    ctd = await startContainerd({ extraPath: bin });
    tasks = new ScriptedTasks(() => (publisher ??= new EventPublisher({ address: ctd.ttrpcAddress, namespace: 'vrunns' })));
    server = new TtrpcServer();
    mountTaskService(server, tasks);
    await server.listen(shimSocket);
    await ctr('images', 'import', '--snapshotter', 'native', buildImageArchive(dir));
  });

  afterAll(async () => {
    await publisher?.close();
    await server?.close();
    await ctd?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('runs a task: the exit code our implementation reports is the exit code of ctr run', async () => {
    const r = await ctrStatus('run', '--fifo-dir', fifoDir, '--snapshotter', 'native', '--runtime', RUNTIME, IMAGE, 'c1');
    expect(r.code, r.out).toBe(7);
    // ctr run creates, starts, waits for and then deletes the task; containerd shuts the shim down after.
    const rpcs = tasks.calls.map((c) => c.rpc);
    for (const rpc of ['Create', 'Start', 'Wait', 'Delete', 'Shutdown']) expect(rpcs).toContain(rpc);
    expect(rpcs.indexOf('Create')).toBeLessThan(rpcs.indexOf('Start'));
    expect(rpcs.indexOf('Start')).toBeLessThan(rpcs.lastIndexOf('Delete'));
    const create = tasks.calls.find((c) => c.rpc === 'Create')!;
    expect(create.detail).toMatchObject({ bundleHasConfig: true, rootfs: ['bind'] });
  });

  it('answers ps and exec, and a duplicate exec id gets the implementation\'s error', async () => {
    await ctr('run', '-d', '--fifo-dir', fifoDir, '--snapshotter', 'native', '--runtime', RUNTIME, IMAGE, 'c2');
    const ps = await ctrStatus('task', 'ps', 'c2');
    expect(ps.code, ps.out).toBe(0);
    expect(ps.out).toMatch(/^\s*5\d{3}\b/m);
    expect(tasks.calls.some((c) => c.rpc === 'Pids')).toBe(true);

    const exec = await ctrStatus('task', 'exec', '--fifo-dir', fifoDir, '--exec-id', 'e1', 'c2', '/bin/echo', 'hi');
    expect(exec.code, exec.out).toBe(3);
    const execCall = tasks.calls.find((c) => c.rpc === 'Exec')!;
    expect(execCall.detail).toMatchObject({ execId: 'e1', typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', args: ['/bin/echo', 'hi'] });

    const detached = await ctrStatus('task', 'exec', '--fifo-dir', fifoDir, '--detach', '--exec-id', 'e2', 'c2', 'sleep', '100');
    expect(detached.code, detached.out).toBe(0);
    const dup = await ctrStatus('task', 'exec', '--fifo-dir', fifoDir, '--exec-id', 'e2', 'c2', 'sleep', '100');
    expect(dup.code).not.toBe(0);
    expect(dup.out).toContain('exec id e2 is already in use');
  });

  it('delivers kill, then delete of the stopped task', async () => {
    // c2's init exits by itself after a moment; kill it first so the signal is what it died of.
    const kill = await ctrStatus('task', 'kill', '--signal', 'SIGKILL', 'c2');
    expect(kill.code, kill.out).toBe(0);
    expect(tasks.calls.find((c) => c.rpc === 'Kill')?.detail).toMatchObject({ signal: 9, execId: '' });
    const del = await ctrStatus('task', 'delete', 'c2');
    expect(del.code, del.out).toBe(0);
    expect(del.out).toContain('137');
    const ls = await ctrStatus('task', 'ls');
    expect(ls.out).not.toMatch(/^c2\s/m);
  });
});
