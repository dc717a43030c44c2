import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { AgentClient, OciProcess, WaitResult } from '../agent/client.js';
import { VrunError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { ContainerLogWriter } from './container-log.js';
import { GuestShare } from './guest-share.js';
import { buildSpec, type OciSpec } from './oci-spec.js';
import { PodVm } from './pod-vm.js';
import { prepareRootfs, type PreparedRootfs } from './rootfs.js';
import { type SandboxPaths, type SandboxState, writeState } from './state.js';
import { bindVolume } from './volume-bind.js';
import { resolveUser } from './user.js';

/**
 * One pod's sandbox, run by the sandbox process: it prepares the rootfs, starts virtiofsd and the VMM,
 * waits for the guest agent, creates the container, and tears everything down when the container ends
 * or any part of the stack dies. Every phase is timed into state.json (the benchmark reads them).
 */
export interface OutputSink {
  stdout(chunk: Buffer): void;
  stderr(chunk: Buffer): void;
}

export interface ExecRequest {
  args: string[];
  env: string[];
  workdir?: string;
  user?: string;
  tty: boolean;
  /** With tty: the client's window, the terminal's size from the start (OCI process.consoleSize). */
  size?: { rows: number; cols: number };
}

/** What the guest shares are mounted as inside the guest (relative to the agent's share dir). */
const ROOTFS_TAG = 'vrun-root';

export class Sandbox {
  private pod: PodVm | undefined;
  private share: GuestShare | undefined;
  private readonly unbinds: (() => Promise<void>)[] = [];
  private agent: AgentClient | undefined;
  private rootfs: PreparedRootfs | undefined;
  private spec: OciSpec | undefined;
  private readonly sinks = new Set<OutputSink>();
  private containerLog: ContainerLogWriter | undefined;
  private pumps: Promise<void>[] = [];
  private stdinStream: (Writable & { written: Promise<number> }) | undefined;
  private tearingDown = false;
  private stateQueue: Promise<void> = Promise.resolve();
  private failure: string | undefined;
  private exitResult: WaitResult | undefined;
  private readonly doneWaiters: (() => void)[] = [];
  private finished = false;
  /** Settles when the container has been created in the guest (or the boot failed). */
  readonly ready: Promise<void>;
  private resolveReady: () => void = () => undefined;
  private rejectReady: (e: Error) => void = () => undefined;
  private started = false;

  constructor(
    private readonly state: SandboxState,
    private readonly paths: SandboxPaths,
    private readonly log: Logger,
  ) {
    this.ready = new Promise((res, rej) => {
      this.resolveReady = res;
      this.rejectReady = rej;
    });
    this.ready.catch(() => undefined);
  }

  get id(): string {
    return this.state.id;
  }

  get current(): SandboxState {
    return this.state;
  }

  /** Persists the state; writes are queued so the file always holds the latest one. */
  private save(patch: Partial<SandboxState>): Promise<void> {
    Object.assign(this.state, patch);
    const snapshot = structuredClone(this.state);
    this.stateQueue = this.stateQueue.then(() => writeState(snapshot, path.dirname(this.paths.dir)).catch((err) => this.log.error({ err: errorMessage(err) }, 'writing state failed')));
    return this.stateQueue;
  }

  private phase(name: string, started: number): void {
    const ms = Math.round((performance.now() - started) * 10) / 10;
    this.state.phases = { ...this.state.phases, [name]: ms };
    this.log.info({ phase: name, ms }, 'phase done');
  }

  async boot(): Promise<void> {
    try {
      await this.bootSteps();
      this.resolveReady();
    } catch (err) {
      const msg = errorMessage(err).split('\n')[0] ?? 'boot failed';
      this.log.error({ err: errorMessage(err) }, 'sandbox boot failed');
      this.rejectReady(new VrunError(msg));
      await this.fail(msg);
    }
  }

  private async bootSteps(): Promise<void> {
    const cfg = this.state.config;
    await this.save({ pids: { ...this.state.pids, sandbox: process.pid } });

    const t = performance.now();
    this.share = await GuestShare.create(this.paths.dir);
    this.rootfs = await prepareRootfs(cfg.image, this.state.id, await this.share.mkdir('rootfs'));
    const userSpec = cfg.user ?? (this.rootfs.config.User || undefined);
    const user = userSpec !== undefined ? await resolveUser(userSpec, this.rootfs.hostPath) : undefined;
    const shares = [{ tag: ROOTFS_TAG, dir: this.share.servedDir, what: 'rootfs' }];
    for (const [i, v] of cfg.volumes.entries()) {
      const dir = path.join(this.paths.dir, `vol${i}`);
      this.unbinds.push(await bindVolume(v.hostPath, dir, v.readonly));
      shares.push({ tag: `vrun-vol${i}`, dir, what: `volume ${i} (${v.hostPath})` });
    }
    this.phase('imagePrep', t);

    const pod = await PodVm.boot(
      {
        vmm: cfg.vmm,
        vcpus: Math.max(1, Math.min(8, Math.ceil(cfg.cpus ?? 2))),
        memoryMiB: Math.max(512, Math.ceil((cfg.memoryBytes ?? 0) / 2 ** 20) + 384),
        cmdlineExtra: `vrun.hostname=${this.state.id.slice(0, 12)}`,
        shares,
        paths: { runDir: this.paths.runDir, agent: this.paths.agent, console: this.paths.console, fsSocket: (i) => this.paths.fsSocket(i) },
      },
      this.log,
      {
        onDeath: (reason) => void this.fail(reason),
        onLaunched: async (launched) => {
          this.pod = launched;
          await this.save({ backend: launched.backend, pids: { sandbox: process.pid, ...launched.pids } });
        },
        onPhase: (name, started) => this.phase(name, started),
      },
    );
    this.agent = pod.agent;
    const details = pod.details;

    const createStarted = performance.now();
    const rootMount = await this.agent.mountShare({ tag: ROOTFS_TAG, path: 'root', readonly: false });
    const mounts: { source: string; destination: string; readonly: boolean }[] = [];
    for (const [i, v] of cfg.volumes.entries()) {
      const src = await this.agent.mountShare({ tag: `vrun-vol${i}`, path: `vol${i}`, readonly: v.readonly });
      mounts.push({ source: src, destination: v.containerPath, readonly: v.readonly });
    }
    this.spec = buildSpec(this.rootfs.config, {
      args: cfg.args,
      entrypoint: cfg.entrypoint,
      env: cfg.env,
      workdir: cfg.workdir,
      user,
      terminal: cfg.tty,
      readonlyRootfs: cfg.readOnly,
      hostname: this.state.id.slice(0, 12),
      memoryBytes: cfg.memoryBytes,
      cpus: cfg.cpus,
      pidsLimit: cfg.pidsLimit,
      mounts,
    });
    if (this.spec.process.args.length === 0) throw new VrunError(`no command given and the image ${cfg.image} has no Entrypoint or Cmd`);
    await this.agent.createContainer({
      containerId: this.state.id,
      spec: this.spec as unknown as Parameters<AgentClient['createContainer']>[0]['spec'],
      rootfs: `${rootMount}/${this.rootfs.guestRelPath}`,
      stdio: cfg.tty ? 'terminal' : 'pipes',
    });
    this.startPumps();
    this.phase('containerCreate', createStarted);
    await this.save({
      guest: { kernel: details.kernelRelease, cpus: details.cpus, memTotalBytes: details.memTotalBytes },
    });
  }

  /** Copies the container's output to container.log and to every attached client until EOF. */
  private startPumps(): void {
    const agent = this.agent as AgentClient;
    this.containerLog = new ContainerLogWriter(this.paths.containerLog);
    const ref = { containerId: this.state.id };
    const streams: ['stdout' | 'stderr', Readable][] = [['stdout', agent.readOutput(ref, 'stdout')]];
    if (!this.state.config.tty) streams.push(['stderr', agent.readOutput(ref, 'stderr')]);
    this.pumps = streams.map(
      ([which, stream]) =>
        new Promise<void>((resolve) => {
          stream.on('data', (chunk: Buffer) => {
            this.containerLog?.write(which, chunk);
            for (const s of this.sinks) s[which](chunk);
          });
          stream.on('end', resolve);
          stream.on('error', (err) => {
            this.log.warn({ err: errorMessage(err), which }, 'output stream ended with an error');
            resolve();
          });
        }),
    );
  }

  addSink(sink: OutputSink): () => void {
    this.sinks.add(sink);
    return () => this.sinks.delete(sink);
  }

  /** Logs the VMM's view of the guest, on request (SIGUSR2): for a sandbox that seems stuck. */
  async logVmmState(why: string): Promise<void> {
    if (!(await this.pod?.logVmmState(why))) this.log.warn(`${why}: no VMM state (no VM yet, or a backend that gives none)`);
  }

  /** Opens the container's stdin for an attached client (only one writer). */
  openStdin(): Writable & { written: Promise<number> } {
    if (!this.agent) throw new VrunError('the container is not created yet');
    if (this.stdinStream) throw new VrunError('another client already writes to this container\'s stdin');
    this.stdinStream = this.agent.writeStdin({ containerId: this.state.id });
    this.stdinStream.on('error', (err) => this.log.debug({ err: errorMessage(err) }, 'stdin stream ended'));
    return this.stdinStream;
  }

  /** Starts the container's process; without interactive stdin it reads EOF, like `docker run` without -i. */
  async start(opts: { keepStdin: boolean }): Promise<void> {
    await this.ready;
    if (this.started) throw new VrunError('the container was already started');
    this.started = true;
    const agent = this.agent as AgentClient;
    const t = performance.now();
    // The calls go out together on the one connection, since in a TCG guest each round trip costs 100-200 ms:
    // the wait is valid on a created container, and a process that reads stdin before the close lands waits
    // for it and gets the same EOF. A wait left over from a failed start is dropped with the container.
    const exited = agent.waitProcess({ containerId: this.state.id });
    exited.catch(() => undefined);
    const closing = opts.keepStdin
      ? undefined
      : agent.closeStdin({ containerId: this.state.id }).catch((err: unknown) => this.log.debug({ err: errorMessage(err) }, 'closing stdin'));
    await agent.startContainer(this.state.id);
    await closing;
    this.phase('containerStart', t);
    await this.save({ status: 'running', startedAt: new Date().toISOString() });
    void this.waitForExit(exited);
  }

  private async waitForExit(exited: Promise<WaitResult>): Promise<void> {
    let result: WaitResult;
    try {
      result = await exited;
    } catch (err) {
      const reason = `lost the container's exit status: ${errorMessage(err).split('\n')[0]}`;
      if (this.pod) void this.pod.reportLoss(reason);
      else void this.fail(reason);
      return;
    }
    // Output written just before the exit is still in flight: drain it, bounded.
    await Promise.race([Promise.all(this.pumps), new Promise((r) => setTimeout(r, 5000))]);
    this.exitResult = result;
    this.log.info({ ...result }, 'container exited');
    await this.teardown({ status: 'exited', exitCode: result.exitStatus, oomKilled: result.oomKilled });
  }

  get exit(): WaitResult | undefined {
    return this.exitResult;
  }

  get failed(): string | undefined {
    return this.failure;
  }

  async signal(signal: string, all = false): Promise<void> {
    await this.ready;
    await (this.agent as AgentClient).signalProcess({ containerId: this.state.id }, signal, { all });
  }

  async resize(rows: number, cols: number, execId?: string): Promise<void> {
    if (!this.agent) return;
    await this.agent.resizeTerminal({ containerId: this.state.id, execId }, { rows, cols });
  }

  /** SIGTERM, then SIGKILL after `timeoutS`; resolves once the sandbox is torn down. */
  async stop(timeoutS: number): Promise<void> {
    if (this.finished) return;
    if (!this.started) {
      await this.teardown({ status: 'exited', exitCode: 137 });
      return;
    }
    // A guest that never answers must not hold the clock: the signals go out without waiting for their replies,
    // and the caller (control server, SIGTERM handler) bounds the wait for `done` with a teardown of its own.
    void this.signal('SIGTERM').catch(() => undefined);
    const done = this.whenDone();
    const timedOut = await Promise.race([done.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), timeoutS * 1000))]);
    if (timedOut) void this.signal('SIGKILL', true).catch(() => undefined);
    await done;
  }

  async stats(): Promise<unknown> {
    await this.ready;
    return (this.agent as AgentClient).stats(this.state.id);
  }

  async exec(req: ExecRequest, stdin: boolean, sink: OutputSink): Promise<{ execId: string; stdin?: Writable; wait: Promise<WaitResult> }> {
    await this.ready;
    if (!this.started || this.finished) throw new VrunError('the container is not running');
    const agent = this.agent as AgentClient;
    const spec = this.spec as OciSpec;
    const execId = `exec-${randomBytes(6).toString('hex')}`;
    const user = req.user !== undefined && this.rootfs ? await resolveUser(req.user, this.rootfs.hostPath) : spec.process.user;
    const proc: OciProcess = {
      ...spec.process,
      args: req.args,
      env: req.env.length > 0 ? mergeEnvList(spec.process.env, req.env) : spec.process.env,
      cwd: req.workdir ?? spec.process.cwd,
      user,
      terminal: req.tty,
      ...(req.tty && req.size ? { consoleSize: { height: req.size.rows, width: req.size.cols } } : {}),
    };
    await agent.execProcess({ containerId: this.state.id, execId, process: proc, stdio: req.tty ? 'terminal' : 'pipes' });
    const ref = { containerId: this.state.id, execId };
    const outs: Promise<void>[] = (req.tty ? (['stdout'] as const) : (['stdout', 'stderr'] as const)).map(
      (which) =>
        new Promise<void>((resolve) => {
          const s = agent.readOutput(ref, which);
          s.on('data', (c: Buffer) => sink[which](c));
          s.on('end', resolve);
          s.on('error', () => resolve());
        }),
    );
    let stdinStream: Writable | undefined;
    if (stdin) {
      stdinStream = agent.writeStdin(ref);
      stdinStream.on('error', () => undefined);
    } else await agent.closeStdin(ref).catch(() => undefined);
    const wait = agent.waitProcess(ref).then(async (r) => {
      await Promise.race([Promise.all(outs), new Promise((res) => setTimeout(res, 5000))]);
      return r;
    });
    return { execId, stdin: stdinStream, wait };
  }

  whenDone(): Promise<void> {
    if (this.finished) return Promise.resolve();
    return new Promise((r) => this.doneWaiters.push(r));
  }

  /** Something broke: record why, tear everything down, keep the state (for `ps`) unless --rm. */
  async fail(reason: string): Promise<void> {
    if (this.tearingDown) return;
    this.failure = reason;
    this.log.error({ reason }, 'sandbox failed');
    this.rejectReady(new VrunError(reason));
    // A guest that is still up but stopped answering: where the VMM saw it goes into the log first.
    if (this.pod?.up) await this.pod.logVmmState('the sandbox failed');
    await this.teardown({ status: 'failed', error: reason });
  }

  /** Stops the guest, the VMM, virtiofsd and the rootfs, in that order; idempotent. */
  async teardown(final: Partial<SandboxState>): Promise<void> {
    if (this.tearingDown) return this.whenDone();
    this.tearingDown = true;
    const t = performance.now();
    // The container has exited (or the pod failed): the guest holds nothing worth a clean shutdown, since
    // virtio-fs writes reach the host as they happen. Pulling the plug is the fast, certain end.
    this.agent?.close();
    await this.pod?.stop({ graceful: false });
    for (const u of this.unbinds) await u().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'undoing a volume bind mount failed'));
    await this.containerLog?.close();
    if (this.rootfs) await this.rootfs.release().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'releasing the rootfs failed'));
    await this.share?.destroy().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'taking the share down failed'));
    this.phase('teardown', t);
    await this.save({ ...final, finishedAt: new Date().toISOString() });
    this.finished = true;
    for (const w of this.doneWaiters.splice(0)) w();
  }
}

function mergeEnvList(base: string[] | undefined, extra: string[]): string[] {
  const byName = new Map<string, string>();
  for (const e of [...(base ?? []), ...extra]) byName.set(e.split('=')[0] ?? e, e);
  return [...byName.values()];
}
