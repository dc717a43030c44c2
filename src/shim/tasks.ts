import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AgentClient, OciProcess, ProcessRef, WaitResult } from '../agent/client.js';
import { AgentError } from '../agent/client.js';
import { VrunError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { PodVm, type PodVmPids } from '../sandbox/pod-vm.js';
import { timestampFromDate, type Timestamp } from '../ttrpc/protobuf/well-known.js';
import { Code, TtrpcError, isTtrpcError } from '../ttrpc/status.js';
import type { EventPublisher, TaskEventInit } from './events.js';
import { FifoStdio, type StdioPaths } from './fifo-stdio.js';
import { guestSpecFromBundle, parseExecProcess } from './guest-spec.js';
import { bindMount, mountRootfs } from './host-mounts.js';
import { GuestShare } from '../sandbox/guest-share.js';
import { metricsAny } from './metrics.js';
import type { PodPaths } from './pod-paths.js';
import type { TaskEventKind } from './protocol/event-messages.js';
import type { ShimTaskService } from './protocol/task-service.js';
import type * as m from './protocol/task-messages.js';
import { TaskStatus } from './protocol/types.js';
import { podVmConfigFrom, type PodVmConfig } from './runtime-options.js';

/**
 * The shim's Task service: every container of the pod, each a container in the pod's VM, driven through
 * the guest agent. Exits are reported (Wait, State, the TaskExit event) only after the process's output
 * reached containerd's FIFOs, so `ctr run` never loses the last lines.
 */
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** What a process of a pod whose VM died is reported to have exited with. */
const VM_LOST_STATUS = 255;
/** The virtio-fs tag of the pod's shared directory, which holds every container's rootfs and bind mounts. */
const SHARE_TAG = 'vrun-pod';

/** The pod's VM and where the guest sees the pod's shared directory. */
interface Pod {
  vm: PodVm;
  guestShare: string;
}

interface Proc {
  execId: string;
  pid: number;
  status: TaskStatus;
  exitStatus: number;
  exitedAt: Date | undefined;
  exited: Promise<void>;
  markExited(status: number): void;
  stdio: StdioPaths;
  io: FifoStdio | undefined;
  /** An exec's process, kept until Start creates it in the guest. */
  pending: OciProcess | undefined;
  /** Opens once the start event went out, so an exit event can never overtake it. */
  startGate: Promise<void>;
  openGate(): void;
}

interface Container {
  id: string;
  bundle: string;
  init: Proc;
  execs: Map<string, Proc>;
}

function newProc(execId: string, stdio: StdioPaths): Proc {
  let resolveExit: () => void = () => undefined;
  let openGate: () => void = () => undefined;
  const p: Proc = {
    execId,
    pid: 0,
    status: TaskStatus.CREATED,
    exitStatus: 0,
    exitedAt: undefined,
    exited: new Promise<void>((r) => (resolveExit = r)),
    markExited(status: number) {
      if (p.status === TaskStatus.STOPPED) return;
      p.status = TaskStatus.STOPPED;
      p.exitStatus = status;
      p.exitedAt = new Date();
      resolveExit();
    },
    stdio,
    io: undefined,
    pending: undefined,
    startGate: new Promise<void>((r) => (openGate = r)),
    openGate: () => openGate(),
  };
  return p;
}

function ts(d: Date | undefined): Timestamp | undefined {
  return d ? timestampFromDate(d) : undefined;
}

/** Agent failures keep their gRPC code (ttrpc uses the same numbers); everything else is UNKNOWN. */
function toTtrpc(err: unknown): Error {
  if (isTtrpcError(err)) return err;
  if (err instanceof AgentError) return new TtrpcError(err.code as number, err.message);
  return new TtrpcError(Code.UNKNOWN, errorMessage(err));
}

export class VrunTasks implements ShimTaskService {
  private readonly containers = new Map<string, Container>();
  private pod: Promise<Pod> | undefined;
  private share: Promise<GuestShare> | undefined;
  private podLost: string | undefined;
  private shuttingDown = false;
  /** containerd asked to shut down while a container still existed (e.g. during a Create that then failed). */
  private shutdownAsked = false;
  /** Resolves when the serving process should exit. */
  readonly done: Promise<void>;
  private finish: () => void = () => undefined;

  constructor(
    private readonly paths: PodPaths,
    private readonly events: EventPublisher,
    private readonly log: Logger,
    private readonly onPodStarted: (pids: PodVmPids, backend: string) => Promise<void>,
  ) {
    this.done = new Promise((r) => (this.finish = r));
  }

  private emit<K extends TaskEventKind>(kind: K, ev: TaskEventInit<K>): void {
    this.events.publish(kind, ev).catch((err: unknown) => this.log.error({ err: errorMessage(err), kind }, 'event not delivered'));
  }

  private container(id: string): Container {
    const c = this.containers.get(id);
    if (!c) throw new TtrpcError(Code.NOT_FOUND, `container ${id} not found in this pod`);
    return c;
  }

  private proc(id: string, execId: string): Proc {
    const c = this.container(id);
    if (execId === '') return c.init;
    const p = c.execs.get(execId);
    if (!p) throw new TtrpcError(Code.NOT_FOUND, `container ${id} has no exec process ${execId}`);
    return p;
  }

  private async agent(): Promise<{ vm: PodVm; agent: AgentClient }> {
    if (this.podLost) throw new TtrpcError(Code.UNAVAILABLE, this.podLost);
    if (!this.pod) throw new TtrpcError(Code.FAILED_PRECONDITION, 'the pod has no VM yet');
    const { vm } = await this.pod;
    return { vm, agent: vm.agent };
  }

  /** Boots the pod's VM (the first Create does) and mounts the pod's shared directory in the guest. */
  private async bootPod(cfg: PodVmConfig): Promise<Pod> {
    const share = await (this.share ??= GuestShare.create(this.paths.dir));
    let vm: PodVm | undefined;
    try {
      vm = await PodVm.boot(
        {
          vmm: cfg.vmm,
          vcpus: cfg.vcpus,
          memoryMiB: cfg.memoryMiB,
          shares: [{ tag: SHARE_TAG, dir: share.servedDir, what: "pod's shared directory" }],
          paths: { runDir: this.paths.runDir, agent: this.paths.agent, console: this.paths.console, fsSocket: () => this.paths.fsSocket },
        },
        this.log,
        { onDeath: (reason) => this.onPodDeath(reason), onLaunched: (launched) => this.onPodStarted(launched.pids, launched.backend) },
      );
      return { vm, guestShare: await vm.agent.mountShare({ tag: SHARE_TAG, path: 'pod' }) };
    } catch (err) {
      await vm?.stop({ graceful: false });
      throw new VrunError(`the pod's VM did not come up: ${errorMessage(err).split('\n')[0]}`);
    }
  }

  /** The container's mounts and mount points in the pod's share (a host-only tree: see GuestShare). */
  private async removeContainerDir(id: string): Promise<void> {
    const share = await this.share?.catch(() => undefined);
    await share?.remove(id).catch((err: unknown) => this.log.warn({ err: errorMessage(err), id }, 'removing the container from the pod share failed'));
  }

  private async guarded<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toTtrpc(err);
    }
  }

  private onPodDeath(reason: string): void {
    if (this.podLost || this.shuttingDown) return;
    this.podLost = reason;
    this.log.error({ reason }, 'pod VM lost');
    for (const c of this.containers.values()) {
      for (const p of [c.init, ...c.execs.values()]) {
        if (p.status === TaskStatus.STOPPED || p.pid === 0) continue;
        p.markExited(VM_LOST_STATUS);
        void p.startGate.then(() => this.emit('TaskExit', { containerId: c.id, id: p.execId || c.id, pid: p.pid, exitStatus: p.exitStatus, exitedAt: ts(p.exitedAt) }));
      }
    }
  }

  /** Follows a started process to its exit: agent wait, output drained, then the state change and the event. */
  private watch(c: Container, p: Proc, agent: AgentClient): void {
    const ref: ProcessRef = { containerId: c.id, execId: p.execId || undefined };
    void this.waitWithRetry(agent, ref, c.id, p.execId)
      .then(
        async (r: WaitResult) => {
          await p.io?.drained();
          if (r.oomKilled) this.emit('TaskOOM', { containerId: c.id });
          return r.exitStatus;
        },
        (err: unknown) => {
          this.log.warn({ err: errorMessage(err), id: c.id, execId: p.execId }, 'lost a process exit status');
          return VM_LOST_STATUS;
        },
      )
      .then(async (status) => {
        if (p.status === TaskStatus.STOPPED) return;
        p.markExited(status);
        await p.io?.release();
        await p.startGate;
        this.emit('TaskExit', { containerId: c.id, id: p.execId || c.id, pid: p.pid, exitStatus: status, exitedAt: ts(p.exitedAt) });
      });
  }

  /**
   * A failed Wait call is not a lost process: the call is retried a few times (the agent keeps the exit
   * status of a finished process) before the process counts as lost with the pod.
   */
  private async waitWithRetry(agent: AgentClient, ref: ProcessRef, id: string, execId: string): Promise<WaitResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await agent.waitProcess(ref);
      } catch (err) {
        this.log.warn({ err: errorMessage(err), id, execId, attempt }, 'waiting for a process failed');
        if (attempt >= 4 || this.podLost || this.shuttingDown) throw err;
        await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
  }

  async create(req: m.CreateTaskRequest) {
    return this.guarded(async () => {
      if (!ID_RE.test(req.id)) throw new TtrpcError(Code.INVALID_ARGUMENT, `container id ${JSON.stringify(req.id)} is not valid for vrun (letters, digits, _ . -, at most 64)`);
      if (this.containers.has(req.id)) throw new TtrpcError(Code.ALREADY_EXISTS, `container ${req.id} already exists in this pod`);
      if (req.checkpoint !== '') throw new TtrpcError(Code.UNIMPLEMENTED, 'vrun cannot restore tasks from a checkpoint');
      let configText: string;
      try {
        configText = await readFile(path.join(req.bundle, 'config.json'), 'utf8');
      } catch (err) {
        throw new TtrpcError(Code.INVALID_ARGUMENT, `cannot read the bundle's config.json: ${errorMessage(err)}`);
      }
      const guest = guestSpecFromBundle(configText);
      const vmConfig = await podVmConfigFrom(req.options);
      this.pod ??= this.bootPod(vmConfig);
      const pod = this.pod;
      pod.catch(() => undefined);
      const stdio: StdioPaths = { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal };
      const c: Container = { id: req.id, bundle: req.bundle, init: newProc('', stdio), execs: new Map() };
      this.containers.set(req.id, c);
      let vm: PodVm | undefined;
      try {
        const booted = await pod;
        vm = booted.vm;
        const share = await (this.share as Promise<GuestShare>);
        if (guest.pod) {
          // The pod's hostname and sysctls belong to the guest, whose uts, ipc and net namespaces every
          // container of the pod shares.
          if (guest.pod.hostname) await vm.agent.setHostname(guest.pod.hostname);
          if (Object.keys(guest.pod.sysctls).length > 0) await vm.agent.setSysctls(guest.pod.sysctls);
        }
        await mountRootfs(share, req.id, req.rootfs, path.join(req.bundle, 'rootfs'));
        const guestDir = `${booted.guestShare}/${req.id}`;
        for (const b of guest.binds) {
          await bindMount(share, req.id, b.index, b.source, b.readonly);
          const mnt = guest.spec.mounts?.[b.index];
          if (mnt) mnt.source = `${guestDir}/mounts/${b.index}`;
        }
        c.init.pid = await vm.agent.createContainer({
          containerId: req.id,
          spec: guest.spec,
          rootfs: `${guestDir}/rootfs`,
          stdio: req.terminal ? 'terminal' : 'pipes',
        });
        c.init.io = await FifoStdio.attach(stdio, vm.agent, { containerId: req.id }, this.log);
      } catch (err) {
        this.containers.delete(req.id);
        if (vm && c.init.pid !== 0) await vm.agent.removeContainer(req.id, { force: true }).catch(() => undefined);
        await this.removeContainerDir(req.id);
        if (this.shutdownAsked && this.containers.size === 0) void this.stopPod();
        throw err;
      }
      this.watch(c, c.init, vm.agent);
      this.log.info({ id: req.id, pid: c.init.pid }, 'container created');
      this.emit('TaskCreate', { containerId: req.id, bundle: req.bundle, rootfs: req.rootfs, io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal }, pid: c.init.pid });
      return { pid: c.init.pid };
    });
  }

  async start(req: m.StartRequest) {
    return this.guarded(async () => {
      const c = this.container(req.id);
      const p = this.proc(req.id, req.execId);
      if (p.status !== TaskStatus.CREATED) throw new TtrpcError(Code.FAILED_PRECONDITION, `${req.execId ? `exec ${req.execId}` : `container ${req.id}`} was already started`);
      const { agent } = await this.agent();
      if (req.execId === '') {
        await agent.startContainer(req.id);
        p.status = TaskStatus.RUNNING;
        this.emit('TaskStart', { containerId: req.id, pid: p.pid });
        p.openGate();
        return { pid: p.pid };
      }
      if (c.init.status !== TaskStatus.RUNNING) throw new TtrpcError(Code.FAILED_PRECONDITION, `container ${req.id} is not running`);
      const proc = p.pending as OciProcess;
      p.pid = await agent.execProcess({ containerId: req.id, execId: req.execId, process: proc, stdio: p.stdio.terminal ? 'terminal' : 'pipes' });
      p.pending = undefined;
      p.io = await FifoStdio.attach(p.stdio, agent, { containerId: req.id, execId: req.execId }, this.log);
      p.status = TaskStatus.RUNNING;
      this.watch(c, p, agent);
      this.emit('TaskExecStarted', { containerId: req.id, execId: req.execId, pid: p.pid });
      p.openGate();
      return { pid: p.pid };
    });
  }

  async delete(req: m.DeleteRequest) {
    return this.guarded(async () => {
      const c = this.container(req.id);
      const p = this.proc(req.id, req.execId);
      if (p.status === TaskStatus.RUNNING || p.status === TaskStatus.PAUSED) {
        throw new TtrpcError(Code.FAILED_PRECONDITION, `cannot delete ${req.execId ? `exec ${req.execId}` : `container ${req.id}`}: it is still running`);
      }
      const exitedAt = p.exitedAt ?? new Date();
      if (req.execId !== '') {
        c.execs.delete(req.execId);
        return { pid: p.pid, exitStatus: p.exitStatus, exitedAt: ts(exitedAt) };
      }
      if (p.status === TaskStatus.CREATED) p.markExited(0);
      p.openGate();
      if (!this.podLost && this.pod) {
        const { agent } = await this.agent();
        await agent.removeContainer(req.id, { force: true }).catch((err: unknown) => this.log.warn({ err: errorMessage(err), id: req.id }, 'removing the container in the guest failed'));
      }
      await this.removeContainerDir(req.id);
      this.containers.delete(req.id);
      this.emit('TaskDelete', { containerId: req.id, pid: p.pid, exitStatus: p.exitStatus, exitedAt: ts(exitedAt) });
      return { pid: p.pid, exitStatus: p.exitStatus, exitedAt: ts(exitedAt) };
    });
  }

  async state(req: m.StateRequest) {
    const c = this.container(req.id);
    const p = this.proc(req.id, req.execId);
    return {
      id: req.execId || req.id,
      bundle: c.bundle,
      pid: p.pid,
      status: p.status,
      stdin: p.stdio.stdin,
      stdout: p.stdio.stdout,
      stderr: p.stdio.stderr,
      terminal: p.stdio.terminal,
      exitStatus: p.exitStatus,
      exitedAt: ts(p.exitedAt),
      execId: req.execId,
    };
  }

  async wait(req: m.WaitRequest) {
    const p = this.proc(req.id, req.execId);
    await p.exited;
    return { exitStatus: p.exitStatus, exitedAt: ts(p.exitedAt) };
  }

  async kill(req: m.KillRequest) {
    return this.guarded(async () => {
      const p = this.proc(req.id, req.execId);
      if (p.status === TaskStatus.STOPPED) throw new TtrpcError(Code.NOT_FOUND, `process ${req.execId || req.id} already finished`);
      if (p.pid === 0) throw new TtrpcError(Code.FAILED_PRECONDITION, `exec ${req.execId} is not started`);
      if (req.signal < 1 || req.signal > 64) throw new TtrpcError(Code.INVALID_ARGUMENT, `signal ${req.signal} is out of range 1..64`);
      const { agent } = await this.agent();
      await agent.signalProcess({ containerId: req.id, execId: req.execId || undefined }, req.signal, { all: req.all });
    });
  }

  async exec(req: m.ExecProcessRequest) {
    return this.guarded(async () => {
      const c = this.container(req.id);
      if (!ID_RE.test(req.execId)) throw new TtrpcError(Code.INVALID_ARGUMENT, `exec id ${JSON.stringify(req.execId)} is not valid (letters, digits, _ . -, at most 64)`);
      if (c.execs.has(req.execId)) throw new TtrpcError(Code.ALREADY_EXISTS, `exec id ${req.execId} is already in use in container ${req.id}`);
      if (c.init.status !== TaskStatus.RUNNING) throw new TtrpcError(Code.FAILED_PRECONDITION, `container ${req.id} is not running`);
      const proc = parseExecProcess(req.spec?.value ?? new Uint8Array(0));
      const p = newProc(req.execId, { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal });
      p.pending = { ...proc, terminal: req.terminal };
      c.execs.set(req.execId, p);
      this.emit('TaskExecAdded', { containerId: req.id, execId: req.execId });
    });
  }

  async pids(req: m.PidsRequest) {
    return this.guarded(async () => {
      this.container(req.id);
      const { agent } = await this.agent();
      const procs = await agent.listProcesses(req.id);
      return { processes: procs.map((p) => ({ pid: p.pid })) };
    });
  }

  async pause(req: m.PauseRequest) {
    return this.guarded(async () => {
      const c = this.container(req.id);
      const { agent } = await this.agent();
      await agent.pauseContainer(req.id);
      c.init.status = TaskStatus.PAUSED;
      this.emit('TaskPaused', { containerId: req.id });
    });
  }

  async resume(req: m.ResumeRequest) {
    return this.guarded(async () => {
      const c = this.container(req.id);
      const { agent } = await this.agent();
      await agent.resumeContainer(req.id);
      if (c.init.status === TaskStatus.PAUSED) c.init.status = TaskStatus.RUNNING;
      this.emit('TaskResumed', { containerId: req.id });
    });
  }

  async resizePty(req: m.ResizePtyRequest) {
    return this.guarded(async () => {
      const p = this.proc(req.id, req.execId);
      if (p.pid === 0 || p.status === TaskStatus.STOPPED) return;
      const { agent } = await this.agent();
      await agent.resizeTerminal({ containerId: req.id, execId: req.execId || undefined }, { rows: req.height, cols: req.width });
    });
  }

  async closeIO(req: m.CloseIORequest) {
    return this.guarded(async () => {
      const p = this.proc(req.id, req.execId);
      if (!req.stdin || p.pid === 0 || p.status === TaskStatus.STOPPED) return;
      const { agent } = await this.agent();
      await agent.closeStdin({ containerId: req.id, execId: req.execId || undefined });
    });
  }

  async update(req: m.UpdateTaskRequest) {
    return this.guarded(async () => {
      this.container(req.id);
      let resources: unknown;
      try {
        resources = JSON.parse(Buffer.from(req.resources?.value ?? new Uint8Array(0)).toString('utf8'));
      } catch (err) {
        throw new TtrpcError(Code.INVALID_ARGUMENT, `update: resources are not valid JSON: ${errorMessage(err)}`);
      }
      if (typeof resources !== 'object' || resources === null || Array.isArray(resources)) throw new TtrpcError(Code.INVALID_ARGUMENT, 'update: resources must be a JSON object');
      const { agent } = await this.agent();
      await agent.updateResources(req.id, resources as Record<string, unknown>);
    });
  }

  async stats(req: m.StatsRequest) {
    return this.guarded(async () => {
      this.container(req.id);
      const { agent } = await this.agent();
      return { stats: metricsAny(await agent.stats(req.id)) };
    });
  }

  async connect(req: m.ConnectRequest) {
    const c = this.containers.get(req.id);
    return { shimPid: process.pid, taskPid: c?.init.pid ?? 0, version: '2' };
  }

  /** containerd calls this after each task's delete; the pod ends when its last container is gone. */
  async shutdown(req: m.ShutdownRequest) {
    if (this.containers.size > 0 && !req.now) {
      this.shutdownAsked = true;
      return;
    }
    void this.stopPod();
  }

  /** Stops the VM and every mount, then lets the serving process exit. Safe to call twice. */
  async stopPod(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    const pod = this.pod;
    if (pod) {
      const booted = await pod.catch(() => undefined);
      await booted?.vm.stop({ graceful: true });
    }
    const share = await this.share?.catch(() => undefined);
    await share?.destroy().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'taking the pod share down failed'));
    this.finish();
  }
}
