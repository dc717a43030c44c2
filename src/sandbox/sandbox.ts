import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { AgentClient } from '../agent/host/client.js';
import type { WaitResult } from '../agent/protocol/process.js';
import { type ErrorKind, VrunError, errorKind, errorMessage } from '../common/errors.js';
import { accepts, transition } from '../common/lifecycle.js';
import type { Logger } from '../common/log.js';
import { ContainerLogWriter } from './container-log.js';
import { commandError, startExec, type ExecRequest, type OutputSink } from './container-exec.js';
import { GuestShare } from './guest-share.js';
import { buildSpec } from './oci-spec.js';
import { PodVm, type BootPhase, type PodVmSpec } from './pod-vm.js';
import { prepareRootfs, type PreparedRootfs } from './rootfs.js';
import { endRecord, guestIn, sandboxLifecycle, type Failure, type Guest, type SandboxEvent, type SandboxLifecycleState } from './sandbox-state.js';
import { type SandboxPaths, type SandboxState, writeState } from './state.js';
import { bindVolume } from './volume-bind.js';
import { resolveUser } from '../common/user-db.js';
import { vmNetsOf } from '../network/pod-nics.js';
import { configureGuestNetwork, connectPod, disconnectPod, isNetworked, type PodNetwork } from './network.js';
import { guestMemoryMiB } from './guest-memory.js';

export type { ExecRequest, OutputSink } from './container-exec.js';

/** What the sandbox uses of its pod VM. */
export type SandboxPod = Pick<PodVm, 'agent' | 'details' | 'backend' | 'pids' | 'up' | 'logVmmState' | 'reportLoss' | 'stop'>;

/** How the sandbox gets its rootfs and its VM: the real ones, or a test's stand-ins that need no image store or VM. */
export interface SandboxParts {
  prepareRootfs: typeof prepareRootfs;
  bootPod(
    spec: PodVmSpec,
    log: Logger,
    hooks: { onDeath(reason: string): void; onLaunched(pod: SandboxPod): Promise<void>; onPhase(phase: BootPhase, startedAt: number): void },
  ): Promise<SandboxPod>;
}

const REAL_PARTS: SandboxParts = { prepareRootfs, bootPod: (spec, log, hooks) => PodVm.boot(spec, log, hooks) };

/** The guest's files the agent writes (SetHosts, SetDns, the hostname), bound into the container as Docker does. */
const GUEST_ETC_FILES = ['/etc/hosts', '/etc/resolv.conf', '/etc/hostname'];

/** What the guest shares are mounted as inside the guest (relative to the agent's share dir). */
const ROOTFS_TAG = 'vrun-root';

/**
 * One pod's sandbox, run by the sandbox process: it prepares the rootfs, starts virtiofsd and the VMM,
 * waits for the guest agent, creates the container, and tears everything down when the container ends
 * or any part of the stack dies. Every phase is timed into state.json (the benchmark reads them).
 * Its lifecycle is in sandbox-state.ts.
 */
export class Sandbox {
  private lc: SandboxLifecycleState = { status: 'booting' };
  private pod: SandboxPod | undefined;
  private share: GuestShare | undefined;
  private readonly unbinds: (() => Promise<void>)[] = [];
  private rootfs: PreparedRootfs | undefined;
  private readonly sinks = new Set<OutputSink>();
  private containerLog: ContainerLogWriter | undefined;
  private pumps: Promise<void>[] = [];
  private stdinStream: (Writable & { written: Promise<number> }) | undefined;
  private stateQueue: Promise<void> = Promise.resolve();
  private readonly doneWaiters: (() => void)[] = [];
  /** The network's setup, once begun: its teardown waits for it. */
  private networkUp: Promise<PodNetwork | undefined> | undefined;
  /** Settles when the container has been created in the guest (or the boot failed). */
  readonly ready: Promise<void>;
  private resolveReady: () => void = () => undefined;
  private rejectReady: (e: Error) => void = () => undefined;

  constructor(
    private readonly state: SandboxState,
    private readonly paths: SandboxPaths,
    private readonly log: Logger,
    private readonly parts: SandboxParts = REAL_PARTS,
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

  get lifecycle(): SandboxLifecycleState {
    return this.lc;
  }

  /** A refused edge throws IllegalTransitionError (kind 'precondition'). */
  private step(event: SandboxEvent): SandboxLifecycleState {
    return (this.lc = transition(sandboxLifecycle, this.lc, event, this.state.id.slice(0, 12)));
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
      this.rejectReady(new VrunError(msg, { kind: errorKind(err) }));
      await this.fail(msg, errorKind(err));
    }
  }

  private async bootSteps(): Promise<void> {
    const cfg = this.state.config;
    await this.save({ pids: { ...this.state.pids, sandbox: process.pid } });

    const t = performance.now();
    const hostname = cfg.hostname ?? this.state.id.slice(0, 12);
    // The network comes up while the rootfs is prepared; an end tears down what either made (see end()).
    const network = this.connectNetwork();
    const hostResolvConf = readFile('/etc/resolv.conf', 'utf8').catch(() => '');
    const rootfs = (async () => {
      this.share = await GuestShare.create(this.paths.dir);
      this.rootfs = await this.parts.prepareRootfs(cfg.image, this.state.id, await this.share.mkdir('rootfs'), this.share.idmap);
    })();
    const [net, rootfsDone] = await Promise.allSettled([network, rootfs]);
    if (rootfsDone.status === 'rejected') throw rootfsDone.reason;
    if (net.status === 'rejected') throw net.reason;
    const podNet = net.value;
    if (!this.share || !this.rootfs) throw new Error('rootfs not prepared');
    const userSpec = cfg.user ?? (this.rootfs.config.User || undefined);
    const user = userSpec !== undefined ? await resolveUser(userSpec, this.rootfs.hostPath) : undefined;
    const shares: PodVmSpec['shares'] = [{ tag: ROOTFS_TAG, dir: this.share.servedDir, what: 'rootfs', idmap: this.share.idmap, unmapped: this.share.unmapped }];
    for (const [i, v] of cfg.volumes.entries()) {
      const dir = path.join(this.paths.dir, `vol${i}`);
      this.unbinds.push(await bindVolume(v.hostPath, dir, v.readonly));
      shares.push({ tag: `vrun-vol${i}`, dir, what: `volume ${i} (${v.hostPath})` });
    }
    this.phase('imagePrep', t);

    const pod = await this.parts.bootPod(
      {
        vmm: cfg.vmm,
        vcpus: Math.max(1, Math.min(8, Math.ceil(cfg.cpus ?? 2))),
        memoryMiB: guestMemoryMiB(cfg.memoryBytes),
        cmdlineExtra: `vrun.hostname=${hostname}`,
        shares,
        nets: podNet ? vmNetsOf(podNet.nics) : undefined,
        paths: { runDir: this.paths.runDir, agent: this.paths.agent, console: this.paths.console, fsSocket: (i) => this.paths.fsSocket(i) },
      },
      this.log,
      {
        onDeath: (reason) => void this.fail(reason),
        onLaunched: async (launched) => {
          // A teardown that came before the VM existed could not stop it: the boot stops it instead.
          if (this.lc.status !== 'booting') throw new VrunError(`the sandbox is ${this.lc.status}: its VM is not wanted any more`);
          this.pod = launched;
          await this.save({ backend: launched.backend, pids: { sandbox: process.pid, ...launched.pids } });
        },
        onPhase: (name, started) => this.phase(name, started),
      },
    );
    const { agent, details } = pod;

    const createStarted = performance.now();
    const guestNetwork = configureGuestNetwork(agent, podNet, cfg.network, { hostname, hostResolvConf: await hostResolvConf });
    guestNetwork.catch(() => undefined);
    const rootMount = await agent.mountShare({ tag: ROOTFS_TAG, path: 'root', readonly: false });
    const mounts: { source: string; destination: string; readonly: boolean }[] = [];
    for (const [i, v] of cfg.volumes.entries()) {
      const src = await agent.mountShare({ tag: `vrun-vol${i}`, path: `vol${i}`, readonly: v.readonly });
      mounts.push({ source: src, destination: v.containerPath, readonly: v.readonly });
    }
    const spec = buildSpec(this.rootfs.config, {
      args: cfg.args,
      entrypoint: cfg.entrypoint,
      env: cfg.env,
      workdir: cfg.workdir,
      user,
      terminal: cfg.tty,
      readonlyRootfs: cfg.readOnly,
      hostname,
      memoryBytes: cfg.memoryBytes,
      cpus: cfg.cpus,
      pidsLimit: cfg.pidsLimit,
      mounts: [...GUEST_ETC_FILES.map((f) => ({ source: f, destination: f, readonly: false })), ...mounts],
      ownNetwork: !isNetworked(cfg.network),
    });
    if (spec.process.args.length === 0) throw new VrunError(`no command given and the image ${cfg.image} has no Entrypoint or Cmd`, { kind: 'invalid' });
    const command = spec.process.args[0] as string;
    await guestNetwork;
    await agent
      .createContainer({
        containerId: this.state.id,
        spec: spec as unknown as Parameters<AgentClient['createContainer']>[0]['spec'],
        rootfs: `${rootMount}/${this.rootfs.guestRelPath}`,
        stdio: cfg.tty ? 'terminal' : 'pipes',
      })
      .catch((err: unknown) => {
        throw commandError(err, command);
      });
    // An end during the boot has torn down what it found: nothing more is started for it.
    if (this.step({ type: 'booted', agent, spec }).status !== 'created') return;
    this.startPumps(agent);
    this.phase('containerCreate', createStarted);
    await this.save({
      guest: { kernel: details.kernelRelease, cpus: details.cpus, memTotalBytes: details.memTotalBytes },
    });
  }

  private connectNetwork(): Promise<PodNetwork | undefined> {
    const spec = this.state.config.network;
    const t = performance.now();
    this.networkUp = isNetworked(spec)
      ? connectPod(this.state.id, spec, this.log).then(async (n) => {
          // Runs alongside imagePrep: the benchmark reads both.
          this.phase('network', t);
          await this.save({ ips: n.ips });
          return n;
        })
      : Promise.resolve(undefined);
    return this.networkUp;
  }

  /** Copies the container's output to container.log and to every attached client until EOF. */
  private startPumps(agent: AgentClient): void {
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

  /** The created container's guest; `what` names the refused request otherwise. */
  private guest(what: string): Guest {
    const g = guestIn(this.lc);
    if (g) return g;
    if (this.lc.status === 'booting') throw new VrunError('the container is not created yet');
    throw new VrunError(`the sandbox is ${this.lc.status}: cannot ${what}`, { kind: 'precondition' });
  }

  /** Opens the container's stdin for an attached client (only one writer). */
  openStdin(): Writable & { written: Promise<number> } {
    const { agent } = this.guest('open stdin');
    if (this.stdinStream) throw new VrunError('another client already writes to this container\'s stdin');
    this.stdinStream = agent.writeStdin({ containerId: this.state.id });
    this.stdinStream.on('error', (err) => this.log.debug({ err: errorMessage(err) }, 'stdin stream ended'));
    return this.stdinStream;
  }

  /** Starts the container's process; without interactive stdin it reads EOF, like `docker run` without -i. */
  async start(opts: { keepStdin: boolean }): Promise<void> {
    await this.ready;
    this.step({ type: 'start' });
    const { agent } = this.guest('start');
    const t = performance.now();
    // The calls go out together on the one connection, since in a TCG guest each round trip costs 100-200 ms:
    // the wait is valid on a created container, and a process that reads stdin before the close lands waits
    // for it and gets the same EOF. A wait left over from a failed start is dropped with the container.
    const exited = agent.waitProcess({ containerId: this.state.id });
    exited.catch(() => undefined);
    const closing = opts.keepStdin
      ? undefined
      : agent.closeStdin({ containerId: this.state.id }).catch((err: unknown) => this.log.debug({ err: errorMessage(err) }, 'closing stdin'));
    try {
      await agent.startContainer(this.state.id);
    } catch (err) {
      this.step({ type: 'failed' });
      throw err;
    }
    await closing;
    this.phase('containerStart', t);
    // An end that came during the start owns state.json; recording 'running' now would overwrite it.
    const s = this.step({ type: 'started' });
    if (s.status !== 'running' && s.status !== 'stopping') return;
    await this.save({ status: 'running', startedAt: new Date().toISOString() });
    void this.waitForExit(exited);
  }

  private async waitForExit(exited: Promise<WaitResult>): Promise<void> {
    let waited: WaitResult;
    try {
      waited = await exited;
    } catch (err) {
      const reason = `lost the container's exit status: ${errorMessage(err).split('\n')[0]}`;
      if (this.pod) void this.pod.reportLoss(reason);
      else void this.fail(reason);
      return;
    }
    // Output written just before the exit is still in flight: drain it, bounded.
    await Promise.race([Promise.all(this.pumps), new Promise((r) => setTimeout(r, 5000))]);
    this.log.info({ ...waited }, 'container exited');
    await this.end({ type: 'exit', waited });
  }

  get exit(): WaitResult | undefined {
    return this.lc.status === 'exiting' || this.lc.status === 'exited' ? this.lc.exit.waited : undefined;
  }

  get failed(): Failure | undefined {
    return this.lc.status === 'failing' || this.lc.status === 'failed' ? this.lc.failure : undefined;
  }

  async signal(signal: string, all = false): Promise<void> {
    await this.ready;
    await this.guest('signal').agent.signalProcess({ containerId: this.state.id }, signal, { all });
  }

  async resize(rows: number, cols: number, execId?: string): Promise<void> {
    await guestIn(this.lc)?.agent.resizeTerminal({ containerId: this.state.id, execId }, { rows, cols });
  }

  /** SIGTERM, then SIGKILL after `timeoutS`; resolves once the sandbox is torn down. */
  async stop(timeoutS: number): Promise<void> {
    if (!accepts(sandboxLifecycle, this.lc, 'stop')) {
      // Not started: nothing to signal. Already ending: the end is under way.
      if (accepts(sandboxLifecycle, this.lc, 'teardown')) return this.teardown({ status: 'exited', exitCode: 137 });
      return this.whenDone();
    }
    this.step({ type: 'stop' });
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
    return this.guest('stats').agent.stats(this.state.id);
  }

  async exec(req: ExecRequest, stdin: boolean, sink: OutputSink): Promise<{ execId: string; stdin?: Writable; wait: Promise<WaitResult> }> {
    await this.ready;
    const live = this.lc;
    if (live.status !== 'starting' && live.status !== 'running' && live.status !== 'stopping') throw new VrunError('the container is not running');
    const { agent, spec } = live;
    return startExec(agent, spec, this.state.id, req, stdin, sink);
  }

  whenDone(): Promise<void> {
    if (this.lc.status === 'exited' || this.lc.status === 'failed') return Promise.resolve();
    return new Promise((r) => this.doneWaiters.push(r));
  }

  /** Something broke: record why, tear everything down, keep the state (for `ps`) unless --rm. */
  async fail(reason: string, kind: ErrorKind = 'internal'): Promise<void> {
    if (!accepts(sandboxLifecycle, this.lc, 'death')) return;
    await this.end({ type: 'death', reason, kind }, async () => {
      this.log.error({ reason, kind }, 'sandbox failed');
      this.rejectReady(new VrunError(reason, { kind }));
      // A guest that is still up but stopped answering: where the VMM saw it goes into the log first.
      if (this.pod?.up) await this.pod.logVmmState('the sandbox failed');
    });
  }

  /** Ends the sandbox on request, with `end` as its record (a stop before the start, or one the guest did not confirm); idempotent. */
  teardown(end: { status: 'exited'; exitCode: number; error?: string }): Promise<void> {
    return this.end({ type: 'teardown', exit: { exitCode: end.exitCode, error: end.error } }, async (from) => {
      if (from.status === 'booting') this.rejectReady(new VrunError('the sandbox was stopped before its container was created', { kind: 'precondition' }));
    });
  }

  /**
   * Takes the end (the first one wins: a later one waits for it), then stops the guest, the VMM, virtiofsd and
   * the rootfs, in that order.
   */
  private async end(event: Extract<SandboxEvent, { type: 'exit' | 'death' | 'teardown' }>, first?: (from: SandboxLifecycleState) => Promise<void>): Promise<void> {
    if (!accepts(sandboxLifecycle, this.lc, event.type)) return this.whenDone();
    const from = this.lc;
    this.step(event);
    await first?.(from);
    const t = performance.now();
    // The container has exited (or the pod failed): the guest holds nothing worth a clean shutdown, since
    // virtio-fs writes reach the host as they happen. Pulling the plug is the fast, certain end.
    guestIn(from)?.agent.close();
    await this.pod?.stop({ graceful: false });
    // The VMM held the tap; the ADD may still be running if the end came during the boot.
    await this.networkUp?.catch(() => undefined);
    if (this.networkUp) await disconnectPod(this.state.id, this.state.config.network).catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'releasing the network failed'));
    for (const u of this.unbinds) await u().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'undoing a volume bind mount failed'));
    await this.containerLog?.close();
    if (this.rootfs) await this.rootfs.release().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'releasing the rootfs failed'));
    await this.share?.destroy().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'taking the share down failed'));
    this.phase('teardown', t);
    await this.save({ ...endRecord(this.lc), finishedAt: new Date().toISOString() });
    this.step({ type: 'torndown' });
    for (const w of this.doneWaiters.splice(0)) w();
  }
}
