/**
 * The agent's containers: OCI bundles under the state dir, driven through crun, with each process's stdio
 * and exit status. Container ids become directory and cgroup names only after request-checks.ts accepted
 * them; the spec from the host is parsed and the fields that would reach outside the container's own
 * rootfs/cgroup are set by the agent, not taken from the request.
 */
import { EventEmitter } from 'node:events';
import { closeSync, constants, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { access, mkdir, readdir, rm, rmdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import type { Logger } from '../common/log.js';
import type { AgentConfig } from './config.js';
import { cgroupPids, cgroupStats, oomKillCount } from './cgroup-stats.js';
import { crunRunner, type CrunRunner } from './crun.js';
import type { StatsResponse } from './generated/vrun/agent/v1/StatsResponse.js';
import { agentNative } from './native-ops.js';
import { ProcessIo } from './process-io.js';
import { checkResources } from './resource-checks.js';
import type { Exit, Reaper } from './reaper.js';
import { checkDirInside, checkExecId, checkId, isSafeId, parseSignal } from './request-checks.js';
import { invalid, notFound, precondition, RpcError } from './rpc-error.js';

export type StdioKind = 'pipes' | 'terminal';

export interface WaitResult {
  exitStatus: number;
  signal: number;
  oomKilled: boolean;
}

interface Proc {
  execId: string;
  pid: number;
  io: ProcessIo;
  exit: Promise<WaitResult>;
  result: WaitResult | null;
  /** The cgroup's oom_kill count when the process started: a higher count at exit means an OOM kill. */
  oomBaseline: number;
}

interface Container {
  id: string;
  bundle: string;
  cgroupDir: string;
  state: 'created' | 'running' | 'paused' | 'stopped';
  init: Proc;
  execs: Map<string, Proc>;
  oomKills: number;
  hasPoststartHooks: boolean;
  hasPoststopHooks: boolean;
  /** Serializes state changes of one container (start/pause/remove racing each other). */
  busy: Promise<unknown>;
}

const CONSOLE_TIMEOUT_MS = 30_000;
/** The wait result of a process whose exit the agent could not observe (it outlived an earlier agent). */
const EXIT_UNKNOWN: WaitResult = { exitStatus: 255, signal: 0, oomKilled: false };
const MAX_EXECS = 1024;

function parseJsonObject(what: string, text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw invalid(`${what} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(`${what} must be a JSON object`);
  return v as Record<string, unknown>;
}

function checkProcess(what: string, p: unknown): Record<string, unknown> {
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw invalid(`${what} must be an object`);
  const proc = p as Record<string, unknown>;
  const args = proc.args;
  if (!Array.isArray(args) || args.length === 0 || !args.every((a) => typeof a === 'string')) throw invalid(`${what}.args must be a non-empty array of strings`);
  if (proc.cwd !== undefined && (typeof proc.cwd !== 'string' || !proc.cwd.startsWith('/'))) throw invalid(`${what}.cwd must be an absolute path`);
  if (proc.env !== undefined && (!Array.isArray(proc.env) || !proc.env.every((e) => typeof e === 'string'))) throw invalid(`${what}.env must be an array of strings`);
  return proc;
}

/** Whether `dir` lies on a read-only mount: the kernel answers write-access checks there with EROFS. */
async function onReadOnlyMount(dir: string): Promise<boolean> {
  try {
    await access(dir, constants.W_OK);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EROFS';
  }
}

function hasHooks(spec: Record<string, unknown>, kind: 'poststart' | 'poststop'): boolean {
  const hooks = spec.hooks as Record<string, unknown> | undefined;
  return Array.isArray(hooks?.[kind]) && (hooks[kind] as unknown[]).length > 0;
}

export class Containers extends EventEmitter<{ oom: [{ containerId: string; oomKillCount: number }] }> {
  private readonly containers = new Map<string, Container>();
  private readonly creating = new Set<string>();
  private readonly removing = new Map<string, Promise<unknown>>();
  private readonly crunRoot: string;
  private readonly crun: CrunRunner;
  private readonly bundles: string;
  /**
   * crun's console sockets live apart from the bundles, under short names: a unix socket path holds 107 bytes,
   * and a bundle path with two CRI ids (64 characters each) is longer than that.
   */
  private readonly consoleSockets: string;
  private consoleSeq = 0;
  private oomTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly cfg: AgentConfig,
    private readonly reaper: Reaper,
    private readonly log: Logger,
  ) {
    super();
    this.bundles = path.join(cfg.stateDir, 'containers');
    this.crunRoot = path.join(cfg.stateDir, 'crun');
    this.consoleSockets = path.join(cfg.stateDir, 'cs');
    this.crun = crunRunner(cfg.crun, this.crunRoot, reaper);
  }

  async init(): Promise<void> {
    await mkdir(this.bundles, { recursive: true, mode: 0o700 });
    await mkdir(path.join(this.cfg.stateDir, 'crun'), { recursive: true, mode: 0o700 });
    await mkdir(this.consoleSockets, { recursive: true, mode: 0o700 });
    await this.recover();
  }

  /**
   * Containers of an earlier agent process (restarted, or crashed) come back from their bundles and
   * crun's state: they can be listed, signalled, exec'd into, paused, updated and removed again. What
   * died with that process stays lost: the stdio of its processes, and the exit statuses of processes it
   * had started (they are no longer our children: their wait reports 255, "status unknown").
   */
  private async recover(): Promise<void> {
    const ids = await readdir(this.bundles).catch(() => [] as string[]);
    for (const id of ids) {
      try {
        await this.recoverOne(checkId('container_id', id));
      } catch (err) {
        this.log.warn({ id, err: (err as Error).message }, 'could not recover a container; removing what is left of it');
        await this.crun.run(['delete', '--force', id]).catch(() => undefined);
        await rm(path.join(this.bundles, id), { recursive: true, force: true });
      }
    }
  }

  private async recoverOne(id: string): Promise<void> {
    const bundle = path.join(this.bundles, id);
    const spec = parseJsonObject('config.json', readFileSync(path.join(bundle, 'config.json'), 'utf8'));
    const state = parseJsonObject('crun state', await this.crun.run(['state', id]));
    const status = state.status;
    if (status !== 'created' && status !== 'running' && status !== 'paused' && status !== 'stopped') throw new Error(`crun reports state ${String(status)}`);
    const pid = state.pid;
    if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid < 0) throw new Error(`crun reports pid ${String(pid)}`);
    const cgroupDir = path.join(this.cfg.cgroupRoot, 'vrun', id);
    const oomKills = oomKillCount(cgroupDir);
    const proc = (execId: string, procPid: number): Proc => ({ execId, pid: procPid, io: ProcessIo.none(), exit: Promise.resolve(EXIT_UNKNOWN), result: null, oomBaseline: oomKills });
    const c: Container = {
      id,
      bundle,
      cgroupDir,
      state: status,
      init: proc('', pid),
      execs: new Map(),
      oomKills,
      hasPoststartHooks: hasHooks(spec, 'poststart'),
      hasPoststopHooks: hasHooks(spec, 'poststop'),
      busy: Promise.resolve(),
    };
    if (status === 'stopped' || pid <= 1) {
      c.state = 'stopped';
      c.init.result = EXIT_UNKNOWN;
    } else c.init.exit = this.track(c, c.init);
    for (const file of readdirSync(bundle)) {
      const m = /^exec-(.+)\.pid$/.exec(file);
      if (!m || !isSafeId(m[1] as string)) continue;
      const execPid = Number(readFileSync(path.join(bundle, file), 'utf8').trim());
      if (!Number.isSafeInteger(execPid) || execPid <= 1) continue;
      const p = proc(m[1] as string, execPid);
      if (c.init.result) p.result = EXIT_UNKNOWN;
      else p.exit = this.track(c, p);
      c.execs.set(p.execId, p);
    }
    this.containers.set(id, c);
    this.ensureOomWatch();
    this.log.info({ id, state: c.state, pid, execs: c.execs.size }, 'container recovered');
  }

  private get(id: string): Container {
    checkId('container_id', id);
    const c = this.containers.get(id);
    if (!c) throw notFound(`no container ${id}`);
    return c;
  }

  private proc(containerId: string, execId: string): Proc {
    const c = this.get(containerId);
    if (checkExecId(execId) === '') return c.init;
    const p = c.execs.get(execId);
    if (!p) throw notFound(`container ${containerId} has no process with exec id ${execId}`);
    if (p.pid === 0) throw precondition(`exec ${execId} of ${containerId} is still being started`);
    return p;
  }

  /** Runs `fn` after every earlier state change of the container finished. */
  private serialized<T>(c: Container, fn: () => Promise<T>): Promise<T> {
    const next = c.busy.then(fn, fn);
    c.busy = next.catch(() => undefined);
    return next;
  }

  /** Creates the container; with `start`, also starts it (one call, like `crun run`). Returns the init's pid. */
  async create(req: { containerId: string; ociSpecJson: string; rootfs: string; stdio: StdioKind; start?: boolean }): Promise<number> {
    const pid = await this.createOnly(req);
    if (req.start) {
      try {
        await this.start(req.containerId);
      } catch (err) {
        await this.remove(req.containerId, true).catch(() => undefined);
        throw err;
      }
    }
    return pid;
  }

  private async createOnly(req: { containerId: string; ociSpecJson: string; rootfs: string; stdio: StdioKind }): Promise<number> {
    const id = checkId('container_id', req.containerId);
    if (this.containers.has(id) || this.creating.has(id)) throw new RpcError(status.ALREADY_EXISTS, `container ${id} already exists`);
    await this.removing.get(id);
    if (this.containers.has(id) || this.creating.has(id)) throw new RpcError(status.ALREADY_EXISTS, `container ${id} already exists`);
    const spec = parseJsonObject('oci_spec_json', req.ociSpecJson);
    const processSpec = checkProcess('oci spec process', spec.process);
    if (spec.root !== undefined && (typeof spec.root !== 'object' || spec.root === null)) throw invalid('oci spec root must be an object');
    const linux = spec.linux ?? {};
    if (typeof linux !== 'object' || linux === null || Array.isArray(linux)) throw invalid('oci spec linux must be an object');
    const resources = (linux as { resources?: unknown }).resources;
    if (resources !== undefined) checkResources('oci spec linux.resources', resources);
    // The rootfs may sit on virtio-fs (host round trips): checked while the bundle is being made.
    const root = checkDirInside('rootfs', req.rootfs, [this.cfg.shareDir, this.cfg.stateDir]).then(async (rootfs) => ({
      rootfs,
      // A rootfs on a read-only mount (a share mounted read-only) stays read-only in the container: crun's
      // bind mount of it would otherwise be writable again.
      readonly: (spec.root as { readonly?: unknown } | undefined)?.readonly === true || (await onReadOnlyMount(rootfs)),
    }));
    root.catch(() => undefined);

    const terminal = req.stdio === 'terminal';
    const bundle = path.join(this.bundles, id);
    // The bundle lives on the agent's own tmpfs: synchronous calls cost microseconds and no thread hop.
    try {
      mkdirSync(bundle, { mode: 0o700 });
    } catch {
      throw new RpcError(status.ALREADY_EXISTS, `bundle directory for ${id} already exists`);
    }
    this.creating.add(id);
    try {
      const { rootfs, readonly } = await root;
      const finalSpec = {
        ...spec,
        root: { path: rootfs, readonly },
        process: { ...processSpec, terminal },
        linux: { ...linux, cgroupsPath: `/vrun/${id}` },
      };
      writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(finalSpec));
      const pidFile = path.join(bundle, 'init.pid');
      const { io, pid } = await this.spawnWithStdio(terminal, bundle, 'init', (extra, stdio) =>
        this.crun.run(['create', '--bundle', bundle, '--pid-file', pidFile, ...extra, id], { stdio, logDir: bundle }),
      pidFile);
      const cgroupDir = path.join(this.cfg.cgroupRoot, 'vrun', id);
      const oomKills = oomKillCount(cgroupDir);
      const c: Container = {
        id,
        bundle,
        cgroupDir,
        state: 'created',
        init: { execId: '', pid, io, exit: Promise.resolve({ exitStatus: 0, signal: 0, oomKilled: false }), result: null, oomBaseline: oomKills },
        execs: new Map(),
        oomKills,
        hasPoststartHooks: hasHooks(spec, 'poststart'),
        hasPoststopHooks: hasHooks(spec, 'poststop'),
        busy: Promise.resolve(),
      };
      c.init.exit = this.track(c, c.init);
      this.containers.set(id, c);
      this.creating.delete(id);
      this.ensureOomWatch();
      this.log.info({ id, pid, terminal }, 'container created');
      return pid;
    } catch (err) {
      this.creating.delete(id);
      await this.crun.run(['delete', '--force', id]).catch(() => undefined);
      await rm(bundle, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Starts a crun command that creates a process with fresh stdio: pipes handed over as its fds, or a
   * console socket on which crun sends the pty master.
   */
  private async spawnWithStdio(
    terminal: boolean,
    bundle: string,
    name: string,
    run: (extra: string[], stdio: [number, number, number] | 'ignore') => Promise<string>,
    pidFile: string,
  ): Promise<{ io: ProcessIo; pid: number }> {
    let io: ProcessIo;
    if (terminal) {
      const native = agentNative();
      const sock = path.join(this.consoleSockets, `${++this.consoleSeq}.sock`);
      const listenFd = native.fdListenUnix(sock);
      try {
        const master = native.fdRecvFromListener(listenFd, CONSOLE_TIMEOUT_MS);
        master.catch(() => undefined);
        await run(['--console-socket', sock], 'ignore');
        io = ProcessIo.terminal(await master);
      } finally {
        native.fdClose(listenFd);
        await rm(sock, { force: true });
      }
    } else {
      const p = ProcessIo.pipes();
      try {
        await run([], [p.child.stdin, p.child.stdout, p.child.stderr]);
      } catch (err) {
        p.io.dispose();
        throw err;
      }
      p.io.closeChildEnds();
      io = p.io;
    }
    let pidText = '';
    try {
      pidText = readFileSync(pidFile, 'utf8');
    } catch {
      // reported below
    }
    const pid = Number(pidText.trim());
    if (!Number.isSafeInteger(pid) || pid <= 1) {
      io.dispose();
      throw new RpcError(status.INTERNAL, `crun wrote no usable pid to ${pidFile}`);
    }
    return { io, pid };
  }

  /** The exit of a process, with the OOM verdict read from the container's cgroup at that moment. */
  private track(c: Container, p: Proc): Promise<WaitResult> {
    return this.reaper.watch(p.pid).then(async (e: Exit) => {
      const kills = oomKillCount(c.cgroupDir);
      const result: WaitResult = { exitStatus: e.code, signal: e.signal, oomKilled: kills > p.oomBaseline };
      this.checkOom(c, kills);
      p.result = result;
      if (p === c.init) c.state = 'stopped';
      this.log.info({ id: c.id, execId: p.execId, ...result }, 'process exited');
      return result;
    });
  }

  async start(id: string): Promise<void> {
    const c = this.get(id);
    await this.serialized(c, async () => {
      if (c.state !== 'created') throw precondition(`container ${id} is ${c.state}, not created`);
      if (c.hasPoststartHooks || !this.releaseExecFifo(c)) await this.crun.run(['start', id], { logDir: c.bundle });
      if (c.init.result === null) c.state = 'running';
    });
  }

  /**
   * What `crun start` does, minus a 30-50 ms crun process: the created init blocks reading the state dir's
   * exec.fifo; crun start opens it for writing, unlinks it (how crun later tells "running" from "created")
   * and writes one byte, upon which the init execs the user's program. Only used without poststart hooks
   * (crun runs those). Returns false when there is no fifo or no reader on it: the caller runs `crun start`.
   */
  private releaseExecFifo(c: Container): boolean {
    const fifo = path.join(this.crunRoot, c.id, 'exec.fifo');
    let fd: number;
    try {
      // Non-blocking: a fifo without a reader fails (ENXIO) instead of hanging the agent. Synchronous: the
      // fifo is on the agent's tmpfs, so these calls cannot wait on anything.
      fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch {
      return false;
    }
    try {
      rmSync(fifo, { force: true });
      writeSync(fd, Buffer.alloc(1));
      return true;
    } finally {
      closeSync(fd);
    }
  }

  async exec(req: { containerId: string; execId: string; processJson: string; stdio: StdioKind }): Promise<number> {
    const c = this.get(req.containerId);
    const execId = checkId('exec_id', req.execId);
    if (c.execs.has(execId)) throw new RpcError(status.ALREADY_EXISTS, `exec id ${execId} is already used in container ${c.id}`);
    if (c.execs.size >= MAX_EXECS) throw new RpcError(status.RESOURCE_EXHAUSTED, `container ${c.id} has ${MAX_EXECS} exec processes; remove some`);
    if (c.state !== 'running') throw precondition(`container ${c.id} is ${c.state}, not running`);
    const terminal = req.stdio === 'terminal';
    // crun requires cwd and user in a process file; default them like the container's own process.
    const proc = { cwd: '/', user: { uid: 0, gid: 0 }, ...checkProcess('process_json', parseJsonObject('process_json', req.processJson)), terminal };
    const spec = path.join(c.bundle, `exec-${execId}.json`);
    const pidFile = path.join(c.bundle, `exec-${execId}.pid`);
    const reserved: Proc = { execId, pid: 0, io: ProcessIo.none(), exit: Promise.resolve({ exitStatus: 0, signal: 0, oomKilled: false }), result: null, oomBaseline: 0 };
    c.execs.set(execId, reserved);
    try {
      writeFileSync(spec, JSON.stringify(proc));
      const { io, pid } = await this.spawnWithStdio(terminal, c.bundle, `exec-${execId}`, (extra, stdio) =>
        this.crun.run(['exec', '--detach', '--pid-file', pidFile, '--process', spec, ...extra, c.id], { stdio, logDir: c.bundle }),
      pidFile);
      const p: Proc = { execId, pid, io, exit: reserved.exit, result: null, oomBaseline: oomKillCount(c.cgroupDir) };
      p.exit = this.track(c, p);
      c.execs.set(execId, p);
      return pid;
    } catch (err) {
      c.execs.delete(execId);
      throw err;
    } finally {
      rmSync(spec, { force: true });
    }
  }

  async signal(req: { containerId: string; execId: string; signal: string; all: boolean }): Promise<void> {
    const p = this.proc(req.containerId, req.execId);
    const sig = parseSignal(req.signal);
    if (p.result) throw precondition(`process ${req.execId || 'init'} of ${req.containerId} has already exited`);
    const c = this.get(req.containerId);
    if (p === c.init) {
      await this.crun.run(['kill', ...(req.all ? ['--all'] : []), c.id, String(sig)], { logDir: c.bundle });
      return;
    }
    if (req.all) throw invalid('all=true applies to the init process only');
    // Safe by pid: an exec process is the agent's own unreaped child, so its pid cannot be reused yet.
    process.kill(p.pid, sig);
  }

  wait(containerId: string, execId: string): Promise<WaitResult> {
    return this.proc(containerId, execId).exit;
  }

  io(containerId: string, execId: string): ProcessIo {
    return this.proc(containerId, execId).io;
  }

  async pids(containerId: string): Promise<{ pid: number; execId: string; known: boolean }[]> {
    const c = this.get(containerId);
    const byPid = new Map<number, string>([[c.init.pid, '']]);
    for (const p of c.execs.values()) byPid.set(p.pid, p.execId);
    return (await cgroupPids(c.cgroupDir)).map((pid) => ({ pid, execId: byPid.get(pid) ?? '', known: byPid.has(pid) }));
  }

  stats(containerId: string): Promise<StatsResponse> {
    return cgroupStats(this.get(containerId).cgroupDir);
  }

  async update(containerId: string, resourcesJson: string): Promise<void> {
    const c = this.get(containerId);
    checkResources('resources_json', parseJsonObject('resources_json', resourcesJson));
    const file = path.join(c.bundle, 'resources.json');
    writeFileSync(file, resourcesJson);
    await this.crun.run(['update', '--resources', file, c.id], { logDir: c.bundle });
  }

  async pause(containerId: string): Promise<void> {
    const c = this.get(containerId);
    await this.serialized(c, async () => {
      if (c.state !== 'running') throw precondition(`container ${c.id} is ${c.state}, not running`);
      await this.crun.run(['pause', c.id], { logDir: c.bundle });
      c.state = 'paused';
    });
  }

  async resume(containerId: string): Promise<void> {
    const c = this.get(containerId);
    await this.serialized(c, async () => {
      if (c.state !== 'paused') throw precondition(`container ${c.id} is ${c.state}, not paused`);
      await this.crun.run(['resume', c.id], { logDir: c.bundle });
      c.state = c.init.result ? 'stopped' : 'running';
    });
  }

  async remove(containerId: string, force: boolean): Promise<void> {
    const c = this.get(containerId);
    await this.serialized(c, async () => {
      if (c.state !== 'stopped' && c.state !== 'created' && !force) throw precondition(`container ${c.id} is ${c.state}; stop it first or remove with force`);
      if (c.init.result === null) {
        if (c.state === 'paused') await this.crun.run(['resume', c.id], { logDir: c.bundle }).catch(() => undefined);
        await this.crun.run(['kill', '--all', c.id, 'KILL'], { logDir: c.bundle }).catch(() => undefined);
        await Promise.race([c.init.exit, sleep(10_000)]);
      }
      c.init.io.dispose();
      for (const p of c.execs.values()) p.io.dispose();
      this.containers.delete(c.id);
      // Nothing of the container runs any more: the cleanup (cgroup, crun state, bundle) finishes in the
      // background, and a new container with the same id waits for it in create().
      const cleanup = this.cleanUp(c)
        .catch((err: unknown) => this.log.warn({ id: c.id, err: (err as Error).message }, 'container cleanup failed'))
        .finally(() => this.removing.delete(c.id));
      this.removing.set(c.id, cleanup);
      this.log.info({ id: c.id }, 'container removed');
    });
  }

  /**
   * What `crun delete` does for a stopped container without poststop hooks, minus a 25-35 ms crun process
   * (and the fork of the agent that starts it): remove its cgroup and crun's state directory. Anything
   * else (a cgroup still holding processes, hooks to run) goes to `crun delete --force`.
   */
  private async cleanUp(c: Container): Promise<void> {
    let done = false;
    if (c.init.result !== null && !c.hasPoststopHooks) {
      try {
        await rmdir(c.cgroupDir).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
        await rm(path.join(this.crunRoot, c.id), { recursive: true, force: true });
        done = true;
      } catch (err) {
        this.log.debug({ id: c.id, err: (err as Error).message }, 'cleanup by hand failed; running crun delete');
      }
    }
    // Spawning crun costs a fork of the whole agent: do it after the remove's reply has gone out.
    if (!done) await new Promise((r) => setTimeout(r, 10)).then(() => this.crun.run(['delete', '--force', c.id]));
    await rm(c.bundle, { recursive: true, force: true });
  }

  /** Kills and removes everything (shutdown), including the background cleanups. */
  async removeAll(): Promise<void> {
    await Promise.allSettled([...this.containers.keys()].map((id) => this.remove(id, true)));
    await Promise.allSettled([...this.removing.values()]);
  }

  private checkOom(c: Container, kills: number): void {
    if (kills > c.oomKills) {
      c.oomKills = kills;
      this.emit('oom', { containerId: c.id, oomKillCount: kills });
    }
  }

  /** memory.events has no change notification Node can wait on portably: poll while containers exist. */
  private ensureOomWatch(): void {
    if (this.oomTimer) return;
    this.oomTimer = setInterval(() => {
      if (this.containers.size === 0 && this.oomTimer) {
        clearInterval(this.oomTimer);
        this.oomTimer = null;
        return;
      }
      for (const c of this.containers.values()) {
        if (!c.cgroupDir) continue;
        this.checkOom(c, oomKillCount(c.cgroupDir));
      }
    }, 200);
    this.oomTimer.unref();
  }
}
