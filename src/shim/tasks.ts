import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AgentClient, ProcessRef } from '../agent/host/client.js';
import type { WaitResult } from '../agent/protocol/process.js';
import type { OciProcess } from '../common/oci-spec.js';
import { errorMessage } from '../common/errors.js';
import { checkId } from '../common/ids.js';
import type { Logger } from '../common/log.js';
import type { PodVmPids } from '../sandbox/pod-vm.js';
import { timestampFromDate, type Timestamp } from '../ttrpc/protobuf/well-known.js';
import { Code, TtrpcError, isTtrpcError, statusFromError } from '../ttrpc/status.js';
import type { EventPublisher, TaskEventInit } from './events.js';
import { FifoStdio, type StdioPaths } from './fifo-stdio.js';
import { guestSpecFromBundle, parseExecProcess } from './guest-spec.js';
import { bindMount, mountRootfs } from './host-mounts.js';
import { metricsAny } from './metrics.js';
import type { PodPaths } from './pod-paths.js';
import { ShimPod, type PodHooks } from './pod.js';
import type { TaskEventKind } from './protocol/event-messages.js';
import type { ShimTaskService } from './protocol/task-service.js';
import type * as m from './protocol/task-messages.js';
import { podVmSize } from './pod-sizing.js';
import { podVmConfigFrom } from './runtime-options.js';
import { inFlight, newProc, type Proc } from './task-state.js';

/**
 * The shim's Task service: every container of the pod, each a container in the pod's VM, driven through
 * the guest agent. Exits are reported (Wait, State, the TaskExit event) only after the process's output
 * reached containerd's FIFOs, so `ctr run` never loses the last lines.
 */
/** What a process of a pod whose VM died is reported to have exited with. */
const VM_LOST_STATUS = 255;

interface Container {
  id: string;
  bundle: string;
  init: Proc;
  execs: Map<string, Proc>;
}

function ts(d: Date | undefined): Timestamp | undefined {
  return d ? timestampFromDate(d) : undefined;
}

/** A failure leaves the shim as its kind's code (the one table, error-codes.ts): an agent error's kind came from the agent. */
function toTtrpc(err: unknown): Error {
  if (isTtrpcError(err)) return err;
  const st = statusFromError(err);
  return new TtrpcError(st.code, st.message);
}

export class VrunTasks implements ShimTaskService {
  private readonly containers = new Map<string, Container>();
  private readonly pod: ShimPod;
  /** Resolves when the serving process should exit. */
  readonly done: Promise<void>;
  private finish: () => void = () => undefined;

  constructor(
    paths: PodPaths,
    private readonly events: EventPublisher,
    private readonly log: Logger,
    onPodStarted: (pids: PodVmPids, backend: string) => Promise<void>,
    /** Tests put a pod without a VM here. */
    makePod: (hooks: PodHooks) => ShimPod = (hooks) => new ShimPod(paths, log, hooks),
  ) {
    this.done = new Promise((r) => (this.finish = r));
    this.pod = makePod({ onLost: () => this.onPodLost(), onStarted: onPodStarted });
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

  private async guarded<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toTtrpc(err);
    }
  }

  /** Every process the guest had is gone with it. */
  private onPodLost(): void {
    for (const c of this.containers.values()) {
      for (const p of [c.init, ...c.execs.values()]) {
        // pid 0: never made in the guest, nothing to report.
        if (p.state.status === 'stopped' || p.pid === 0) continue;
        p.step({ type: 'exit', exitStatus: VM_LOST_STATUS, exitedAt: new Date() });
        void p.startGate.then(() => this.emit('TaskExit', { containerId: c.id, id: p.execId || c.id, pid: p.pid, exitStatus: p.exitStatus(), exitedAt: ts(p.exitedAt()) }));
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
        if (p.state.status === 'stopped') return;
        p.step({ type: 'exit', exitStatus: status, exitedAt: new Date() });
        await p.io?.release();
        await p.startGate;
        this.emit('TaskExit', { containerId: c.id, id: p.execId || c.id, pid: p.pid, exitStatus: status, exitedAt: ts(p.exitedAt()) });
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
        if (attempt >= 4 || this.pod.gone()) throw err;
        await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
  }

  async create(req: m.CreateTaskRequest) {
    return this.guarded(async () => {
      checkId('container id', req.id);
      if (this.containers.has(req.id)) throw new TtrpcError(Code.ALREADY_EXISTS, `container ${req.id} already exists in this pod`);
      if (req.checkpoint !== '') throw new TtrpcError(Code.UNIMPLEMENTED, 'vrun cannot restore tasks from a checkpoint');
      let configText: string;
      try {
        configText = await readFile(path.join(req.bundle, 'config.json'), 'utf8');
      } catch (err) {
        throw new TtrpcError(Code.INVALID_ARGUMENT, `cannot read the bundle's config.json: ${errorMessage(err)}`);
      }
      const guest = guestSpecFromBundle(configText);
      // Only the sandbox's spec carries the pod's resources; it is the pod's first Create, which boots the VM.
      const vmConfig = podVmSize(await podVmConfigFrom(req.options), guest.pod ? guest.spec.annotations : undefined);
      if (this.pod.state.status === 'idle') this.log.info({ memoryMiB: vmConfig.memoryMiB, vcpus: vmConfig.vcpus, memoryFrom: vmConfig.memoryFrom, vcpusFrom: vmConfig.vcpusFrom }, 'pod VM size');
      const pod = this.pod.boot(vmConfig, guest.pod?.netns);
      const stdio: StdioPaths = { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal };
      const c: Container = { id: req.id, bundle: req.bundle, init: newProc(req.id, '', stdio, { status: 'creating' }), execs: new Map() };
      this.containers.set(req.id, c);
      let agent: AgentClient | undefined;
      try {
        const booted = await pod;
        agent = booted.vm.agent;
        const share = await this.pod.shareDir();
        if (guest.pod) {
          // The pod's hostname and sysctls belong to the guest, whose uts, ipc and net namespaces every
          // container of the pod shares.
          if (guest.pod.hostname) await agent.setHostname(guest.pod.hostname);
          if (Object.keys(guest.pod.sysctls).length > 0) await agent.setSysctls(guest.pod.sysctls);
        }
        await mountRootfs(share, req.id, req.rootfs, path.join(req.bundle, 'rootfs'));
        const guestDir = `${booted.guestShare}/${req.id}`;
        for (const b of guest.binds) {
          await bindMount(share, req.id, b.index, b.source, b.readonly);
          const mnt = guest.spec.mounts?.[b.index];
          if (mnt) mnt.source = `${guestDir}/mounts/${b.index}`;
        }
        c.init.pid = await agent.createContainer({
          containerId: req.id,
          spec: guest.spec,
          rootfs: `${guestDir}/rootfs`,
          stdio: req.terminal ? 'terminal' : 'pipes',
        });
        c.init.io = await FifoStdio.attach(stdio, agent, { containerId: req.id }, this.log);
        // Refused when a Delete came meanwhile (the task is stopped): the container is undone below.
        c.init.step({ type: 'created' });
      } catch (err) {
        if (this.containers.get(req.id) === c) this.containers.delete(req.id);
        if (agent && c.init.pid !== 0) await agent.removeContainer(req.id, { force: true }).catch(() => undefined);
        await this.pod.removeContainerDir(req.id);
        if (this.pod.draining() && this.containers.size === 0) void this.stopPod();
        throw err;
      }
      this.watch(c, c.init, agent);
      this.log.info({ id: req.id, pid: c.init.pid }, 'container created');
      this.emit('TaskCreate', { containerId: req.id, bundle: req.bundle, rootfs: req.rootfs, io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal }, pid: c.init.pid });
      return { pid: c.init.pid };
    });
  }

  async start(req: m.StartRequest) {
    return this.guarded(async () => {
      const c = this.container(req.id);
      const p = this.proc(req.id, req.execId);
      if (req.execId !== '' && c.init.state.status !== 'running') throw new TtrpcError(Code.FAILED_PRECONDITION, `container ${req.id} is not running`);
      const agent = await this.pod.agent();
      if (req.execId === '') {
        await inFlight(p, 'start', 'started', () => agent.startContainer(req.id));
        this.emit('TaskStart', { containerId: req.id, pid: p.pid });
        p.openGate();
        return { pid: p.pid };
      }
      await inFlight(p, 'start', 'started', async () => {
        const process = (p.state as { process?: OciProcess }).process as OciProcess;
        p.pid = await agent.execProcess({ containerId: req.id, execId: req.execId, process, stdio: p.stdio.terminal ? 'terminal' : 'pipes' });
        p.io = await FifoStdio.attach(p.stdio, agent, { containerId: req.id, execId: req.execId }, this.log);
      });
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
      const s = p.state.status;
      if (s !== 'creating' && s !== 'created' && s !== 'stopped') {
        throw new TtrpcError(Code.FAILED_PRECONDITION, `cannot delete ${req.execId ? `exec ${req.execId}` : `container ${req.id}`}: it is still running`);
      }
      const exitedAt = p.exitedAt() ?? new Date();
      if (req.execId !== '') {
        c.execs.delete(req.execId);
        return { pid: p.pid, exitStatus: p.exitStatus(), exitedAt: ts(exitedAt) };
      }
      // A task deleted before it ran counts as exited with 0 (during its Create, that Create then fails).
      if (s !== 'stopped') p.step({ type: 'exit', exitStatus: 0, exitedAt });
      p.openGate();
      if (this.pod.state.status !== 'lost' && this.pod.state.status !== 'idle') {
        const agent = await this.pod.agent();
        await agent.removeContainer(req.id, { force: true }).catch((err: unknown) => this.log.warn({ err: errorMessage(err), id: req.id }, 'removing the container in the guest failed'));
      }
      await this.pod.removeContainerDir(req.id);
      this.containers.delete(req.id);
      this.emit('TaskDelete', { containerId: req.id, pid: p.pid, exitStatus: p.exitStatus(), exitedAt: ts(exitedAt) });
      return { pid: p.pid, exitStatus: p.exitStatus(), exitedAt: ts(exitedAt) };
    });
  }

  async state(req: m.StateRequest) {
    const c = this.container(req.id);
    const p = this.proc(req.id, req.execId);
    return {
      id: req.execId || req.id,
      bundle: c.bundle,
      pid: p.pid,
      status: p.status(),
      stdin: p.stdio.stdin,
      stdout: p.stdio.stdout,
      stderr: p.stdio.stderr,
      terminal: p.stdio.terminal,
      exitStatus: p.exitStatus(),
      exitedAt: ts(p.exitedAt()),
      execId: req.execId,
    };
  }

  async wait(req: m.WaitRequest) {
    const p = this.proc(req.id, req.execId);
    await p.exited;
    return { exitStatus: p.exitStatus(), exitedAt: ts(p.exitedAt()) };
  }

  async kill(req: m.KillRequest) {
    return this.guarded(async () => {
      const p = this.proc(req.id, req.execId);
      if (p.state.status === 'stopped') throw new TtrpcError(Code.NOT_FOUND, `process ${req.execId || req.id} already finished`);
      if (p.pid === 0) throw new TtrpcError(Code.FAILED_PRECONDITION, `exec ${req.execId} is not started`);
      if (req.signal < 1 || req.signal > 64) throw new TtrpcError(Code.INVALID_ARGUMENT, `signal ${req.signal} is out of range 1..64`);
      const agent = await this.pod.agent();
      await agent.signalProcess({ containerId: req.id, execId: req.execId || undefined }, req.signal, { all: req.all });
    });
  }

  async exec(req: m.ExecProcessRequest) {
    return this.guarded(async () => {
      const c = this.container(req.id);
      checkId('exec id', req.execId);
      if (c.execs.has(req.execId)) throw new TtrpcError(Code.ALREADY_EXISTS, `exec id ${req.execId} is already in use in container ${req.id}`);
      if (c.init.state.status !== 'running') throw new TtrpcError(Code.FAILED_PRECONDITION, `container ${req.id} is not running`);
      const proc = parseExecProcess(req.spec?.value ?? new Uint8Array(0));
      const stdio = { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal };
      const p = newProc(req.id, req.execId, stdio, { status: 'created', process: { ...proc, terminal: req.terminal } });
      c.execs.set(req.execId, p);
      this.emit('TaskExecAdded', { containerId: req.id, execId: req.execId });
    });
  }

  async pids(req: m.PidsRequest) {
    return this.guarded(async () => {
      this.container(req.id);
      const agent = await this.pod.agent();
      const procs = await agent.listProcesses(req.id);
      return { processes: procs.map((p) => ({ pid: p.pid })) };
    });
  }

  async pause(req: m.PauseRequest) {
    return this.guarded(async () => {
      const c = this.container(req.id);
      const agent = await this.pod.agent();
      const { state } = await inFlight(c.init, 'pause', 'paused', () => agent.pauseContainer(req.id));
      if (state.status === 'paused') this.emit('TaskPaused', { containerId: req.id });
    });
  }

  async resume(req: m.ResumeRequest) {
    return this.guarded(async () => {
      const c = this.container(req.id);
      const agent = await this.pod.agent();
      const { state } = await inFlight(c.init, 'resume', 'resumed', () => agent.resumeContainer(req.id));
      if (state.status === 'running') this.emit('TaskResumed', { containerId: req.id });
    });
  }

  async resizePty(req: m.ResizePtyRequest) {
    return this.guarded(async () => {
      const p = this.proc(req.id, req.execId);
      if (p.pid === 0 || p.state.status === 'stopped') return;
      const agent = await this.pod.agent();
      await agent.resizeTerminal({ containerId: req.id, execId: req.execId || undefined }, { rows: req.height, cols: req.width });
    });
  }

  async closeIO(req: m.CloseIORequest) {
    return this.guarded(async () => {
      const p = this.proc(req.id, req.execId);
      if (!req.stdin || p.pid === 0 || p.state.status === 'stopped') return;
      const agent = await this.pod.agent();
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
      const agent = await this.pod.agent();
      await agent.updateResources(req.id, resources as Record<string, unknown>);
    });
  }

  async stats(req: m.StatsRequest) {
    return this.guarded(async () => {
      this.container(req.id);
      const agent = await this.pod.agent();
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
      this.pod.drain();
      return;
    }
    void this.stopPod();
  }

  /** Stops the VM and every mount, then lets the serving process exit. Safe to call twice. */
  async stopPod(): Promise<void> {
    if (await this.pod.stop()) this.finish();
  }
}
