/**
 * The agent's containers: OCI bundles under the state dir, driven through crun, with each process's stdio
 * and exit status. Container ids become directory and cgroup names only after request-checks.ts accepted
 * them; the spec from the host is parsed and the fields that would reach outside the container's own
 * rootfs/cgroup are set by the agent, not taken from the request.
 */
import { EventEmitter } from 'node:events';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import type { Logger } from '../../common/log.js';
import type { AgentConfig } from './config.js';
import { resolveUser } from '../../common/user-db.js';
import { bundleRootfs, checkProcess, hasHooks, onReadOnlyMount, parseJsonObject } from './bundle-spec.js';
import { cgroupPids, cgroupStats, oomKillCount } from './cgroup-stats.js';
import { recoverContainer } from './container-recovery.js';
import { EXIT_UNKNOWN, inFlight, pidOf, stepContainer, stepProcess, type Container, type Proc } from './container-state.js';
import { crunRunner, type CrunRunner } from './crun.js';
import { cleanUpContainer, releaseExecFifo } from './crun-shortcuts.js';
import type { StdioKind, WaitResult } from '../protocol/process.js';
import type { StatsResponse } from '../protocol/generated/vrun/agent/v1/StatsResponse.js';
import { ProcessIo } from './process-io.js';
import { spawnWithStdio } from './process-spawn.js';
import { checkResources } from './resource-checks.js';
import type { Exit, Reaper } from './reaper.js';
import { checkDirInside, checkExecId, checkId, parseSignal } from './request-checks.js';
import { invalid, notFound, precondition, RpcError } from '../protocol/rpc-error.js';

const MAX_EXECS = 1024;

/** A process crun has yet to start: its exit promise stands in until then (callers cannot reach it). */
function startingProc(execId: string): Proc {
  return { execId, state: { status: 'starting' }, io: ProcessIo.none(), exit: Promise.resolve(EXIT_UNKNOWN), oomBaseline: 0 };
}

export class Containers extends EventEmitter<{ oom: [{ containerId: string; oomKillCount: number }] }> {
  /** Every container, from `creating` until its cleanup in `removing` is done. */
  private readonly containers = new Map<string, Container>();
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
   * Containers of an earlier agent process (restarted, or crashed) come back (see container-recovery.ts):
   * they can be listed, signalled, exec'd into, paused, updated and removed again.
   */
  private async recover(): Promise<void> {
    const ids = await readdir(this.bundles).catch(() => [] as string[]);
    for (const id of ids) {
      try {
        const c = await recoverContainer(path.join(this.bundles, checkId('container_id', id)), id, this.cfg.cgroupRoot, this.crun, (c, p) => this.track(c, p));
        this.containers.set(id, c);
        this.ensureOomWatch();
        this.log.info({ id, state: c.state.status, pid: pidOf(c.init), execs: c.execs.size }, 'container recovered');
      } catch (err) {
        this.log.warn({ id, err: (err as Error).message }, 'could not recover a container; removing what is left of it');
        await this.crun.run(['delete', '--force', id]).catch(() => undefined);
        await rm(path.join(this.bundles, id), { recursive: true, force: true });
      }
    }
  }

  private get(id: string): Container {
    checkId('container_id', id);
    const c = this.containers.get(id);
    // One being made, or removed, is not there yet, or any more, for callers.
    if (!c || c.state.status === 'creating' || c.state.status === 'removing') throw notFound(`no container ${id}`);
    return c;
  }

  private proc(containerId: string, execId: string): Proc {
    const c = this.get(containerId);
    if (checkExecId(execId) === '') return c.init;
    const p = c.execs.get(execId);
    if (!p) throw notFound(`container ${containerId} has no process with exec id ${execId}`);
    if (p.state.status === 'starting') throw precondition(`exec ${execId} of ${containerId} is still being started`);
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
    const old = this.containers.get(id);
    if (old?.state.status === 'removing') await old.state.cleanup;
    if (this.containers.has(id)) throw new RpcError(status.ALREADY_EXISTS, `container ${id} already exists`);
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
    const cgroupDir = path.join(this.cfg.cgroupRoot, 'vrun', id);
    const c: Container = {
      id,
      bundle,
      cgroupDir,
      state: { status: 'creating' },
      init: startingProc(''),
      execs: new Map(),
      oomKills: 0,
      hasPoststartHooks: hasHooks(spec, 'poststart'),
      hasPoststopHooks: hasHooks(spec, 'poststop'),
      busy: Promise.resolve(),
    };
    this.containers.set(id, c);
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
      const { io, pid } = await spawnWithStdio(terminal, () => this.consoleSocket(), (extra, stdio) =>
        this.crun.run(['create', '--bundle', bundle, '--pid-file', pidFile, ...extra, id], { stdio, logDir: bundle }),
      pidFile);
      c.oomKills = c.init.oomBaseline = oomKillCount(cgroupDir);
      c.init.io = io;
      stepProcess(c.init, { type: 'started', pid });
      c.init.exit = this.track(c, c.init);
      stepContainer(c, { type: 'created' });
      this.ensureOomWatch();
      this.log.info({ id, pid, terminal }, 'container created');
      return pid;
    } catch (err) {
      await this.crun.run(['delete', '--force', id]).catch(() => undefined);
      await rm(bundle, { recursive: true, force: true });
      // The id stays taken until the bundle is gone: a new container of that id would make its own.
      this.containers.delete(id);
      throw err;
    }
  }

  private consoleSocket(): string {
    return path.join(this.consoleSockets, `${++this.consoleSeq}.sock`);
  }

  /** The exit of a process, with the OOM verdict read from the container's cgroup at that moment. */
  private track(c: Container, p: Proc): Promise<WaitResult> {
    return this.reaper.watch(pidOf(p)).then(async (e: Exit) => {
      const kills = oomKillCount(c.cgroupDir);
      const result: WaitResult = { exitStatus: e.code, signal: e.signal, oomKilled: kills > p.oomBaseline };
      this.checkOom(c, kills);
      stepProcess(p, { type: 'exit', exit: result });
      if (p === c.init) stepContainer(c, { type: 'exit', exit: result });
      this.log.info({ id: c.id, execId: p.execId, ...result }, 'process exited');
      return result;
    });
  }

  async start(id: string): Promise<void> {
    const c = this.get(id);
    await this.serialized(c, () =>
      inFlight(c, 'start', 'started', async () => {
        if (c.hasPoststartHooks || !releaseExecFifo(this.crunRoot, id)) await this.crun.run(['start', id], { logDir: c.bundle });
      }),
    );
  }

  async exec(req: { containerId: string; execId: string; processJson: string; stdio: StdioKind; userSpec?: string }): Promise<number> {
    const c = this.get(req.containerId);
    const execId = checkId('exec_id', req.execId);
    if (c.execs.has(execId)) throw new RpcError(status.ALREADY_EXISTS, `exec id ${execId} is already used in container ${c.id}`);
    if (c.execs.size >= MAX_EXECS) throw new RpcError(status.RESOURCE_EXHAUSTED, `container ${c.id} has ${MAX_EXECS} exec processes; remove some`);
    if (c.state.status !== 'running') throw precondition(`container ${c.id} is ${c.state.status}, not running`);
    const terminal = req.stdio === 'terminal';
    // crun requires cwd and user in a process file; default them like the container's own process.
    const proc = { cwd: '/', user: { uid: 0, gid: 0 }, ...checkProcess('process_json', parseJsonObject('process_json', req.processJson)), terminal };
    if (req.userSpec) proc.user = await resolveUser(req.userSpec, await bundleRootfs(c.bundle));
    const spec = path.join(c.bundle, `exec-${execId}.json`);
    const pidFile = path.join(c.bundle, `exec-${execId}.pid`);
    const p = startingProc(execId);
    c.execs.set(execId, p);
    try {
      writeFileSync(spec, JSON.stringify(proc));
      const { io, pid } = await spawnWithStdio(terminal, () => this.consoleSocket(), (extra, stdio) =>
        this.crun.run(['exec', '--detach', '--pid-file', pidFile, '--process', spec, ...extra, c.id], { stdio, logDir: c.bundle }),
      pidFile);
      p.io = io;
      p.oomBaseline = oomKillCount(c.cgroupDir);
      stepProcess(p, { type: 'started', pid });
      p.exit = this.track(c, p);
      return pid;
    } catch (err) {
      if (c.execs.get(execId) === p) c.execs.delete(execId);
      throw err;
    } finally {
      rmSync(spec, { force: true });
    }
  }

  async signal(req: { containerId: string; execId: string; signal: string; all: boolean }): Promise<void> {
    const p = this.proc(req.containerId, req.execId);
    const sig = parseSignal(req.signal);
    if (p.state.status === 'exited') throw precondition(`process ${req.execId || 'init'} of ${req.containerId} has already exited`);
    const c = this.get(req.containerId);
    if (p === c.init) {
      await this.crun.run(['kill', ...(req.all ? ['--all'] : []), c.id, String(sig)], { logDir: c.bundle });
      return;
    }
    if (req.all) throw invalid('all=true applies to the init process only');
    // Safe by pid: an exec process is the agent's own unreaped child, so its pid cannot be reused yet.
    process.kill(pidOf(p), sig);
  }

  wait(containerId: string, execId: string): Promise<WaitResult> {
    return this.proc(containerId, execId).exit;
  }

  io(containerId: string, execId: string): ProcessIo {
    return this.proc(containerId, execId).io;
  }

  async pids(containerId: string): Promise<{ pid: number; execId: string; known: boolean }[]> {
    const c = this.get(containerId);
    const byPid = new Map<number, string>([[pidOf(c.init), '']]);
    for (const p of c.execs.values()) if (p.state.status !== 'starting') byPid.set(pidOf(p), p.execId);
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
    await this.serialized(c, () => inFlight(c, 'pause', 'paused', async () => void (await this.crun.run(['pause', c.id], { logDir: c.bundle }))));
  }

  async resume(containerId: string): Promise<void> {
    const c = this.get(containerId);
    await this.serialized(c, () => inFlight(c, 'resume', 'resumed', async () => void (await this.crun.run(['resume', c.id], { logDir: c.bundle }))));
  }

  async remove(containerId: string, force: boolean): Promise<void> {
    const c = this.get(containerId);
    await this.serialized(c, async () => {
      const was = c.state.status;
      if (was !== 'stopped' && was !== 'created' && !force) throw precondition(`container ${c.id} is ${was}; stop it first or remove with force`);
      if (c.init.state.status !== 'exited') {
        if (was === 'paused') await this.crun.run(['resume', c.id], { logDir: c.bundle }).catch(() => undefined);
        await this.crun.run(['kill', '--all', c.id, 'KILL'], { logDir: c.bundle }).catch(() => undefined);
        await Promise.race([c.init.exit, sleep(10_000)]);
      }
      c.init.io.dispose();
      for (const p of c.execs.values()) p.io.dispose();
      // Nothing of the container runs any more: the cleanup (cgroup, crun state, bundle) finishes in the
      // background, and a new container with the same id waits for it in create().
      const cleanup = cleanUpContainer(c, this.crunRoot, this.crun, this.log)
        .catch((err: unknown) => this.log.warn({ id: c.id, err: (err as Error).message }, 'container cleanup failed'))
        .finally(() => {
          if (this.containers.get(c.id) === c) this.containers.delete(c.id);
        });
      stepContainer(c, { type: 'remove', cleanup });
      this.log.info({ id: c.id }, 'container removed');
    });
  }

  /** Kills and removes everything (shutdown), including the background cleanups. */
  async removeAll(): Promise<void> {
    await Promise.allSettled([...this.containers.keys()].map((id) => this.remove(id, true)));
    await Promise.allSettled([...this.containers.values()].map((c) => (c.state.status === 'removing' ? c.state.cleanup : undefined)));
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
        if (c.state.status === 'creating' || c.state.status === 'removing') continue;
        this.checkOom(c, oomKillCount(c.cgroupDir));
      }
    }, 200);
    this.oomTimer.unref();
  }
}
